import pytest
import torch
from stage1_world import build_world

from rgcd.training.student import ChorusStudent, ChorusStudentConfig, item_text
from rgcd.training.tiny_base import build_tiny_causal_lm

KNOWLEDGE = "vertical_domain: Food\nkey_subject: Noodles daily\ncontent_theme: spicy"


@pytest.fixture(scope="module")
def rows():
    items, _ = build_world(photos=20, lives=10, pairs=10)
    return items.to_dicts()


@pytest.fixture(scope="module")
def base_1layer(tmp_path_factory, rows):
    out = tmp_path_factory.mktemp("base1")
    return build_tiny_causal_lm(
        [item_text(r) for r in rows] * 3 + [KNOWLEDGE], out, hidden=32, layers=1, heads=2, vocab_size=400
    )


def _student(base, **kw) -> ChorusStudent:
    torch.manual_seed(0)
    return ChorusStudent.from_base(ChorusStudentConfig(base_path=str(base), **kw)).eval()


def _knowledge_hidden(student, item):
    batch = student.collate([item], [KNOWLEDGE])
    h = student._hidden(batch, batch.knowledge_ids, batch.knowledge_valid)
    return h[:, -batch.knowledge_ids.shape[1] :]


def test_knowledge_sees_the_item_only_through_chorus_tokens(base_1layer, rows):
    # With one layer, knowledge tokens can reach the item only by attending to it directly: the
    # chorus tokens' layer-0 inputs are item-independent. So under the mask, changing the item
    # must leave the knowledge states unchanged, and without it must change them.
    a, b = dict(rows[0]), dict(rows[0], title="completely different words here", mm_embedding=None)
    masked = _student(base_1layer)
    assert torch.allclose(_knowledge_hidden(masked, a), _knowledge_hidden(masked, b), atol=1e-5)
    open_ = _student(base_1layer, mask_direct_path=False)
    assert not torch.allclose(_knowledge_hidden(open_, a), _knowledge_hidden(open_, b), atol=1e-3)


def test_chorus_states_shape_padding_and_save_load(base_1layer, rows, tmp_path):
    student = _student(base_1layer, n_chorus=16)
    batch = student.collate(rows[:5] + rows[-3:])  # both domains, some without a vector
    states = student.chorus_states(batch)
    assert states.shape == (8, 16, 32) and torch.isfinite(states).all()
    # left padding must not change an item's states: alone or in a batch, the same
    alone = student.chorus_states(student.collate([rows[1]]))
    assert torch.allclose(alone[0], states[1], atol=1e-4)
    student.save_pretrained(tmp_path / "s")
    assert (tmp_path / "s" / "model.safetensors").exists() and (
        tmp_path / "s" / "chorus_head.safetensors"
    ).exists()
    again = ChorusStudent.from_pretrained(tmp_path / "s").eval()
    assert torch.allclose(again.chorus_states(batch), states, atol=1e-5)


def test_multimodal_vector_reaches_the_chorus_states(base_1layer, rows):
    student = _student(base_1layer)
    photo = next(r for r in rows if r["domain"] == "photo" and r["mm_embedding"] is not None)
    other = dict(photo, mm_embedding=[-x for x in photo["mm_embedding"]])
    s1, s2 = student.chorus_states(student.collate([photo])), student.chorus_states(student.collate([other]))
    assert not torch.allclose(s1, s2, atol=1e-4)


def _own_knowledge(item: dict) -> str:
    """Knowledge that differs from item to item: the item's vertical, subject and first title word."""
    theme = (item["title"] or "untitled").split()[0]
    return (f"vertical_domain: {item['category_l1']}\nkey_subject: {item['category_l3']}\n"
            f"content_theme: {theme}")


@pytest.fixture(scope="module")
def distinct_items(rows):
    """Eight items whose knowledge texts all differ (both domains)."""
    seen, out = set(), []
    for r in rows:
        if _own_knowledge(r) not in seen:
            seen.add(_own_knowledge(r))
            out.append(r)
    assert len(out) >= 8
    return out[:8]


@pytest.fixture(scope="module")
def base_2layer(tmp_path_factory, rows, distinct_items):
    # Two layers: with one, a knowledge token could not reach the item even through the chorus tokens.
    out = tmp_path_factory.mktemp("base2")
    corpus = [item_text(r) for r in rows] * 3 + [_own_knowledge(r) for r in distinct_items]
    return build_tiny_causal_lm(corpus, out, hidden=32, layers=2, heads=2, vocab_size=400)


def _trained(base, items: list[dict], knowledge: list[str],
             steps: int = 150) -> tuple[ChorusStudent, float, float]:
    student = _student(base, max_knowledge_tokens=80)
    student.train()
    batch = student.collate(items, knowledge)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    first = student(batch).item()
    for _ in range(steps):
        loss = student(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return student.eval(), first, loss.item()


def test_student_writes_each_items_own_knowledge_and_a_shuffled_control_cannot(base_2layer, distinct_items):
    items = distinct_items
    truth = [_own_knowledge(r) for r in items]
    assert len(set(truth)) == len(items) == 8
    student, first, last = _trained(base_2layer, items, truth)
    assert last < first / 20
    # Under the mask the knowledge sees each item only through its chorus tokens: every item gets its
    # own text back, which a student that ignored the item (one text for all) could not do.
    assert student.generate_knowledge(student.collate(items)) == truth
    # Control: the same texts, each paired with another item. It learns what it was given just as
    # well, so on the test above (each item's own knowledge) it scores nothing.
    shuffled = truth[3:] + truth[:3]
    control, _, _ = _trained(base_2layer, items, shuffled)
    got = control.generate_knowledge(control.collate(items))
    assert got == shuffled
    assert sum(g == t for g, t in zip(got, truth, strict=True)) == 0


def test_encoding_in_length_order_returns_states_in_item_order(base_1layer, rows):
    from rgcd.training.distill import encode_items

    student = _student(base_1layer)
    states = encode_items(student, rows, batch_size=4)  # batches by text length, answers in input order
    for i in (0, 7, len(rows) - 1):
        alone = student.chorus_states(student.collate([rows[i]]))
        assert torch.allclose(alone[0], states[i], atol=1e-4), i
