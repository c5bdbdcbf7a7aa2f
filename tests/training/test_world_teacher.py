"""The `world` teacher: a simulated teacher for synthetic worlds only (not an LLM) that answers from the
generator's latent knowledge with accuracy p, through the same validation, cache and run path."""

from __future__ import annotations

import json
from types import SimpleNamespace

import polars as pl
import pytest

from rgcd.config import Settings, TeacherConfig
from rgcd.errors import RgcdError
from rgcd.training.reasoning.backends import make_teacher
from rgcd.training.reasoning.prompts import ItemFacts, PairFacts
from rgcd.training.reasoning.schema import parse_pair_answer
from rgcd.training.reasoning.world_teacher import LABEL, WorldTeacher
from rgcd.transforms.demo import TOPICS, generate
from rgcd.transforms.latent import LATENT_DIR, read_latent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate(out, users=150, days=3, seed=4, show_progress=False)
    return out


def _facts(out) -> list[ItemFacts]:
    """Every item of the tiny world as the teacher is shown it (its raw title and text)."""
    photos = pl.read_parquet(out / "photo_meta.parquet")
    rooms = pl.read_parquet(out / "live_room_meta.parquet")
    facts = [ItemFacts(f"photo:{r['photo_id']}", "photo", r["cover_title"] or "", r["video_texts"] or "", (),
                       r["author_id"]) for r in photos.iter_rows(named=True)]
    facts += [ItemFacts(f"live:{r['live_id']}", "live", r["live_name"] or "", "", (), r["author_id"])
              for r in rooms.iter_rows(named=True)]
    return facts


def _pair(photo: ItemFacts, live: ItemFacts) -> PairFacts:
    from datetime import UTC, datetime

    at = datetime(2025, 5, 6, tzinfo=UTC)
    return PairFacts("p", "photo_live", photo.item_id, live.item_id, 1, 1, 0.5, at, photo, live)


@pytest.mark.parametrize("p", [0.9, 0.5])
def test_accuracy_p_is_met_and_answers_pass_the_validator(tiny, p):
    truth = read_latent(tiny / LATENT_DIR)
    topic = dict(zip(truth.items["item_id"].to_list(), truth.items["topic"].to_list(), strict=True))
    teacher = WorldTeacher(tiny / LATENT_DIR, p)
    facts = _facts(tiny)
    said = [teacher.said_topic(f)[0] for f in facts]
    right = sum(s == topic[f.item_id] for s, f in zip(said, facts, strict=True)) / len(facts)
    assert len(facts) > 4000 and abs(right - p) < 0.03, right
    # the same item is judged the same way in every pair; wrong answers are plausible (mostly a sibling)
    assert said == [teacher.said_topic(f)[0] for f in facts]
    wrong = [(s, topic[f.item_id]) for s, f in zip(said, facts, strict=True) if s != topic[f.item_id]]
    assert sum(s // 3 == t // 3 for s, t in wrong) / len(wrong) > 0.45
    photos = [f for f in facts if f.domain == "photo"][:200]
    rooms = [f for f in facts if f.domain == "live"][:200]
    for ph, lv in zip(photos, rooms, strict=True):
        answer = parse_pair_answer(teacher.answer(_pair(ph, lv)))  # the one validator every backend meets
        assert answer.photo.vertical_domain == TOPICS[teacher.said_topic(ph)[0]].l1
        assert answer.match == (teacher.said_topic(ph)[0] == teacher.said_topic(lv)[0])
        assert LABEL in answer.reason


def test_key_subject_is_the_entity_only_world_knowledge_resolves(tiny):
    truth = read_latent(tiny / LATENT_DIR)
    teacher = WorldTeacher(tiny / LATENT_DIR, 1.0)
    named = truth.items.filter(pl.col("entity").is_not_null() & (pl.col("domain") == "photo"))
    entity_of = dict(zip(named["item_id"].to_list(), named["entity"].to_list(), strict=True))
    facts = [f for f in _facts(tiny) if f.item_id in entity_of and f.body_text]
    assert len(facts) > 100
    found = [teacher.entity(f) == entity_of[f.item_id] for f in facts]
    assert sum(found) / len(found) > 0.95


def test_refuses_a_world_without_latent_truth(tmp_path):
    ws = SimpleNamespace(root=tmp_path)
    with pytest.raises(RgcdError) as err:
        make_teacher(TeacherConfig(backend="world"), workspace=ws)
    message = str(err.value)
    assert "synthetic worlds only" in message and "\n" not in message
    assert err.value.exit_code == 2


def test_label_in_teacher_id_and_through_the_run_path(world_ws):
    """reason() with backend world: answers validated, cached and written like any teacher's, labelled."""
    from rgcd.training.reasoning.run import reason
    from rgcd.transforms.latent import LatentTruth, write_latent

    # the tiny stage-1 world's items with the topic of their vertical (rgcd.transforms.demo.TOPICS)
    topic_of = {"Gaming": 0, "Music": 3, "Food": 6, "Sports": 9, "Beauty": 12}
    items = (pl.read_parquet(world_ws.marts / "item_content.parquet")
             .select("item_id", topic=pl.col("category_l1").replace_strict(topic_of, return_dtype=pl.Int64)))
    users = pl.DataFrame(schema={"user_id": pl.Int64, "interests": pl.List(pl.Float32)})
    links = pl.DataFrame(schema={"user_id": pl.Int64, "author_id": pl.Int64, "plays": pl.Int64})
    write_latent(world_ws.root, LatentTruth(items=items, users=users, user_authors=links,
                                            params={"version": 3}))
    s = Settings()
    s = s.model_copy(update={"teacher": s.teacher.model_copy(update={
        "backend": "world", "world_accuracy": 1.0, "max_pairs": 30, "free_teacher_pairs": 30,
        "strength_bands": 1, "max_pairs_per_item": 100})})
    result = reason(world_ws, s, show_progress=False)
    assert LABEL in result.teacher_id and not result.is_llm
    report = json.loads((world_ws.reports / "reason.json").read_text())
    assert LABEL in report["teacher_id"]
    assert report["truth"]["teacher"]["vertical_match_rate"] == 1.0  # p = 1: every vertical right
    rows = pl.read_parquet(world_ws.root / "feature_data" / "pair_reasoning.parquet")
    assert rows.height == 30 and rows["teacher_id"].str.contains("simulated teacher").all()
    again = reason(world_ws, s, show_progress=False)
    assert again.from_cache == 30  # the cache keys on the teacher id
