"""Stage 2 on a small crafted world: each switch changes what it should, and a kill resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transfer_world import build

from rgcd.config import Settings, Workspace
from rgcd.training.decomposition import ChorusStates, ablation_config
from rgcd.training.stage2 import fit_at, training_cut


def small(**transfer) -> Settings:
    s = Settings()
    base = {"dim": 8, "n_queries": 2, "heads": 2, "steps": 150, "max_epochs": 10, "eval_every": 50,
            "batch_size": 64, "lr": 5e-3,
            "checkpoint_every": 50, "held_out_fraction": 0.25}
    return s.model_copy(update={"transfer": s.transfer.model_copy(update={**base, **transfer})})


@pytest.fixture(scope="module")
def stage2_ws(tmp_path_factory) -> Workspace:
    from rgcd.featurestore.store import apply

    ws = Workspace(tmp_path_factory.mktemp("stage2")).ensure()
    build(ws, photos=150, lives=50, pairs=1500, mismatch=0.3)
    apply(ws, Settings())
    return ws


def _fit(ws: Workspace, settings: Settings, name: str = "rgcd", **kw):
    return fit_at(ws, settings, ablation_config(settings.transfer, name), training_cut(ws), **kw)


def test_chorus_states_are_read_by_row_without_loading_all(stage2_ws, tmp_path):
    states = ChorusStates(stage2_ws.student)
    rows = np.array([5, 1, 5, 2, 3, len(states) - 1])  # repeats, a run (1-3), the last row
    got = states.take(rows).numpy()
    path = stage2_ws.student / "chorus_states.safetensors"
    full = load_file(path)["chorus_states"].numpy()
    assert np.array_equal(got, full[rows])
    assert np.allclose(states.mean_pooled(chunk=7), full.mean(axis=1))
    torn = tmp_path / "chorus_states.safetensors"
    torn.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        ChorusStates.from_file(torn).read(np.array([len(states) - 1]))


def test_the_pairs_pooled_states_equal_the_whole_files_rows(stage2_ws):
    states = ChorusStates(stage2_ws.student)
    rows = np.array([9, 2, 2, len(states) - 1, 0])
    pooled = states.pooled_rows(rows, chunk=2)
    assert np.array_equal(pooled[rows], states.mean_pooled()[rows])
    with pytest.raises(KeyError):
        pooled[np.array([3])]


def test_the_fits_vectors_go_to_disk_chunk_by_chunk_and_equal_one_pass_over_every_item(stage2_ws):
    """encode_all writes each chunk as it is encoded; what it wrote equals encoding every item in
    one pass, and rows read back in any order equal those rows."""
    from rgcd.training.decomposition import encode_items

    fit = _fit(stage2_ws, small(encode_batch_size=7, steps=20))
    states = ChorusStates(stage2_ws.student)
    t, r = encode_items(fit.model, states.take(np.arange(len(states))), states.domains)
    assert np.array_equal(np.asarray(fit.transferable), t)
    assert np.array_equal(np.asarray(fit.residual), r)
    rows = np.array([len(states) - 1, 3, 3, 0])
    whole = np.asarray(fit.transferable)
    assert np.array_equal(fit.transferable[rows], whole[rows])
    assert np.array_equal(fit.transferable[2:9], whole[2:9]) and np.array_equal(fit.transferable[4], whole[4])
    mask = np.arange(len(states)) % 3 == 0
    assert np.array_equal(fit.transferable[mask], whole[mask])
    again = _fit(stage2_ws, small(encode_batch_size=7, steps=20))  # reused: read from the same file
    assert again.reused and np.array_equal(np.asarray(again.residual), np.asarray(fit.residual))


def test_reasoning_switch_changes_the_purity_split(stage2_ws):
    with_reasoning = _fit(stage2_ws, small()).summary["purity"]
    behaviour_only = _fit(stage2_ws, small(), "rgcd-no-reasoning").summary["purity"]
    assert with_reasoning["from"] == "behaviour x teacher transferability"
    assert behaviour_only["from"] == "behaviour alone"
    assert with_reasoning["high"] + with_reasoning["low"] == behaviour_only["high"] + behaviour_only["low"]
    # with the teacher, high-purity pairs are the ones it judged transferable; without, a coin toss
    gap_with = with_reasoning["teacher_mean_high"] - with_reasoning["teacher_mean_low"]
    gap_without = behaviour_only["teacher_mean_high"] - behaviour_only["teacher_mean_low"]
    assert gap_with > 0.4 and abs(gap_without) < 0.15


def _mismatch_lift(ws: Workspace, fit) -> dict[str, float]:
    """Per space: mean cosine of held-out pairs across verticals minus that of random pairs."""
    import polars as pl

    from rgcd.training.decomposition import held_out_mask

    states = ChorusStates(ws.student)
    items = pl.read_parquet(ws.marts / "item_content.parquet")
    cat = dict(zip(items["item_id"], items["category_l1"], strict=True))
    pairs = pl.read_parquet(ws.marts / "behaviour_pairs.parquet")
    held = pairs.filter(pl.Series(held_out_mask(pairs["pair_id"].to_list(), 0.25)))
    cross = held.filter(pl.Series([cat[p] != cat[t] for p, t in zip(held["photo_item_id"], held["target_id"],
                                                                     strict=True)]))
    p = np.array([states.row_of[i] for i in cross["photo_item_id"]])
    t = np.array([states.row_of[i] for i in cross["target_id"]])
    r = np.random.default_rng(0).permutation(t)
    out = {}
    for name, v in (("transferable", fit.transferable), ("residual", fit.residual)):
        out[name] = float((v[p] * v[t]).sum(1).mean() - (v[p] * v[r]).sum(1).mean())
    return out


def test_routing_keeps_low_purity_pairs_out_of_the_transferable_space(stage2_ws):
    # A third of the pairs link a vertical's videos to the next vertical's rooms (a habit the
    # teacher calls not transferable). Routed, the residual explains those pairs and the
    # transferable space does not learn them; unrouted, the transferable space must.
    routed = _fit(stage2_ws, small())
    unrouted = _fit(stage2_ws, small(), "rgcd-no-routing")
    lift = {"routed": _mismatch_lift(stage2_ws, routed), "unrouted": _mismatch_lift(stage2_ws, unrouted)}
    assert lift["unrouted"]["transferable"] > lift["routed"]["transferable"] + 0.1, lift
    assert lift["routed"]["residual"] > lift["unrouted"]["residual"] + 0.1, lift
    t = routed.summary["alignment"]["transferable"]
    assert t["high_purity"] > t["random"] + 0.2


def test_no_decomposition_gives_one_vector(stage2_ws):
    fit = _fit(stage2_ws, small(), "rgcd-no-decomposition")
    assert fit.residual is None and set(fit.summary["alignment"]) == {"transferable"}
    assert fit.transferable.shape == (len(ChorusStates(stage2_ws.student)), 16)  # equal capacity


def test_separation_keeps_the_two_spaces_apart(stage2_ws):
    def mean_sq_cos(fit) -> float:
        return float(((np.asarray(fit.transferable) * np.asarray(fit.residual)).sum(axis=1) ** 2).mean())

    apart = _fit(stage2_ws, small(separation_weight=1.0))
    together = _fit(stage2_ws, small(separation=False))
    assert mean_sq_cos(apart) < mean_sq_cos(together) / 2


def test_a_rerun_reuses_the_fit_and_a_killed_run_resumes_to_the_same_weights(stage2_ws, tmp_path):
    settings = small(seed=3)
    clean = _fit(stage2_ws, settings)
    assert not clean.reused and _fit(stage2_ws, settings).reused

    class Killed(Exception):
        pass

    def kill_at_120(step: int, loss: float) -> None:
        if step == 120:
            raise Killed

    resumed_settings = small(seed=3, lr=5e-3 + 1e-12)  # another fingerprint: a fresh fit folder
    with pytest.raises(Killed):
        _fit(stage2_ws, resumed_settings, on_step=kill_at_120)
    steps_seen = []
    resumed = _fit(stage2_ws, resumed_settings, on_step=lambda s, loss: steps_seen.append(s))
    assert steps_seen[0] == 101  # resumed from the checkpoint of step 100, not from scratch
    fresh = _fit(stage2_ws, resumed_settings.model_copy(
        update={"transfer": resumed_settings.transfer.model_copy(update={"checkpoint_every": 10_000})}))
    for key, value in fresh.model.state_dict().items():
        assert np.array_equal(value.numpy(), resumed.model.state_dict()[key].numpy()), key


class _OwnVector(torch.nn.Module):
    """A stand-in aggregation for the metric's test: an item's vector is its one state."""

    def forward(self, states, domain):
        return states[:, 0, :], None


class _Rows:
    def __init__(self, x: np.ndarray) -> None:
        self.x = torch.from_numpy(x.astype(np.float32))

    def take(self, rows):
        return self.x[torch.as_tensor(rows)][:, None, :]


def test_the_stopping_metric_sees_a_topic_aligned_space_that_recall_cannot():
    """Noisy pairs: each video's room shares its topic, but the room is one of many of that
    topic (40 rooms a topic). A space that only knows topics ranks the own room in the top tenth
    (percentile ~0.95) yet rarely first (recall@1 ~ 1/40): the stopping metric must see the
    difference (on the demo world recall@10 among ~3,000 rooms stays at chance for this reason)."""
    from rgcd.training.decomposition import PairSet, held_out_ranking

    rng = np.random.default_rng(0)
    n, topics = 400, 10
    topic = rng.integers(0, topics, n)
    centre = np.eye(topics)[topic] * 3
    x = np.vstack([centre + rng.normal(size=(n, topics)) * 0.3,   # videos: rows 0..n-1
                   centre + rng.normal(size=(n, topics)) * 0.3])  # their rooms: rows n..2n-1
    pairs = PairSet(pair_id=[str(i) for i in range(n)], photo=np.arange(n), live=np.arange(n, 2 * n),
                    strength=np.ones(n), distinct_users=np.ones(n), teacher=np.full(n, np.nan),
                    held_out=np.ones(n, dtype=bool))
    aligned = held_out_ranking(_OwnVector(), _Rows(x), pairs, np.arange(n), k=1)
    shuffled = held_out_ranking(_OwnVector(), _Rows(np.vstack([x[:n], x[n:][rng.permutation(n)]])), pairs,
                                np.arange(n), k=1)
    assert aligned["percentile"] > 0.9 and shuffled["percentile"] < 0.6
    assert aligned["recall"] < 0.2  # topic alignment cannot put the own room first


def test_the_retriever_reads_one_vector_through_shared_and_per_domain_paths_like_the_split():
    from rgcd.training.full_method import tower_groups

    t, r = np.ones((3, 4), np.float32), np.full((3, 4), 2.0, np.float32)
    is_photo = np.array([True, False, True])
    split, single = tower_groups(t, r, is_photo), tower_groups(t, None, is_photo)
    # the ablation keeps the tower's paths (one shared, one per domain); only the split is gone
    assert set(split) == {"transferable", "residual_photo", "residual_live"}
    assert set(single) == {"transferable", "single_photo", "single_live"}
    assert (split["residual_photo"][:, 0] == [2, 0, 2]).all()
    assert (split["residual_live"][:, 0] == [0, 2, 0]).all()
    assert (single["single_photo"][:, 0] == [1, 0, 1]).all()
    assert (single["single_live"][:, 0] == [0, 1, 0]).all()
