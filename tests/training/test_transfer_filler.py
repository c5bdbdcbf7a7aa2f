"""Stage 2's filler: a pair the teacher did not judge takes its transferability from the two items'
item-level answers (item_reasoning read through Feast at the cut) where both have them, from the
ridge probe otherwise; transfer.json counts each source; an answer stamped after the cut is not read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from transfer_world import build

from rgcd.config import Settings, Workspace
from rgcd.training.decomposition import (
    FILL_SOURCES,
    ItemAnswerFit,
    PairSet,
    ProbeFit,
    fill_sources,
    filled_transferability,
    fit_item_answer_filler,
)

MS = pl.Datetime("ms", "UTC")
LATE_ONLY = "live:5003"  # its only answer is stamped after the cut
REGENERATED = "photo:1004"  # answered before the cut; a later answer (after the cut) says otherwise


def _answers(items: pl.DataFrame, cut: datetime) -> pl.DataFrame:
    """item_reasoning: the item's vertical as theme and vertical, stamped at its first appearance;
    every 5th item unanswered; LATE_ONLY answered only after the cut; REGENERATED answered twice."""
    rows = items.filter((pl.col("item_id").str.extract(r":(\d+)").cast(pl.Int64) % 5) != 0)
    late = cut + timedelta(days=1)
    base = pl.DataFrame({
        "item_id": rows["item_id"], "vertical_domain": rows["category_l1"], "key_subject": rows["title"],
        "content_theme": rows["category_l1"], "teacher_id": "test", "prompt_version": "pair-v1",
        "event_timestamp": rows["event_timestamp"].cast(MS),
        "created_timestamp": [datetime.now(UTC)] * rows.height}, schema_overrides={"created_timestamp": MS})
    base = base.with_columns(pl.when(pl.col("item_id") == LATE_ONLY).then(pl.lit(late).cast(MS))
                             .otherwise(pl.col("event_timestamp")).alias("event_timestamp"))
    regenerated = base.filter(pl.col("item_id") == REGENERATED).with_columns(
        pl.lit("late theme").alias("content_theme"), pl.lit("late vertical").alias("vertical_domain"),
        pl.lit(late).cast(MS).alias("event_timestamp"))
    return pl.concat([base, regenerated])


@pytest.fixture(scope="module")
def filler_ws(tmp_path_factory) -> Workspace:
    from rgcd.featurestore.store import apply
    from rgcd.training.stage2 import training_cut
    from rgcd.transforms.latent import LatentTruth, write_latent

    ws = Workspace(tmp_path_factory.mktemp("filler")).ensure()
    items, _ = build(ws, photos=60, lives=20, pairs=400, mismatch=0.3)
    judged = pl.read_parquet(ws.feature_data / "pair_reasoning.parquet").sort("pair_id").gather_every(3)
    judged.write_parquet(ws.feature_data / "pair_reasoning.parquet")
    cut = training_cut(ws)
    _answers(items, cut).write_parquet(ws.feature_data / "item_reasoning.parquet")
    verticals = sorted(items["category_l1"].unique().to_list())
    topics = pl.DataFrame({"item_id": items["item_id"],
                           "topic": [verticals.index(v) for v in items["category_l1"]]})
    write_latent(ws.root, LatentTruth(
        items=topics, users=pl.DataFrame(schema={"user_id": pl.Int64, "interests": pl.List(pl.Float32)}),
        user_authors=pl.DataFrame(schema={"user_id": pl.Int64, "author_id": pl.Int64, "plays": pl.Int64}),
        params={"version": 1}))
    apply(ws, Settings())
    return ws


def _read(ws: Workspace, cut: datetime, **transfer):
    from rgcd.training.chorus_states import ChorusStates
    from rgcd.training.stage2 import read_pairs

    cfg = Settings().transfer.model_copy(update=transfer)
    return read_pairs(ws, Settings(), cut, ChorusStates(ws.student), cfg)


def _pairs_of(pairs: PairSet, item: str) -> np.ndarray:
    return np.array([item in pid.split("|") for pid in pairs.pair_id])


def test_item_answers_are_read_at_the_cut_and_a_later_answer_is_not(filler_ws):
    from rgcd.training.stage2 import training_cut

    cut = training_cut(filler_ws)
    pairs, counts = _read(filler_ws, cut)
    items = pl.read_parquet(filler_ws.marts / "item_content.parquet")
    vertical = dict(zip(items["item_id"], items["category_l1"], strict=True))
    assert pairs.same_answers is not None and pairs.same_answers.shape == (len(pairs.pair_id), 2)
    for n, pid in enumerate(pairs.pair_id):
        photo, room = pid.split("|")
        unanswered = any(int(i.split(":")[1]) % 5 == 0 for i in (photo, room)) or LATE_ONLY in (photo, room)
        if unanswered:
            assert np.isnan(pairs.same_answers[n]).all(), pid
        else:  # the answers before the cut: the item's vertical, for theme and vertical alike
            assert pairs.same_answers[n].tolist() == [float(vertical[photo] == vertical[room])] * 2, pid
    assert counts["items_answered"] > 0
    # REGENERATED's pairs read its answer before the cut; read after its regeneration, they differ
    regenerated = _pairs_of(pairs, REGENERATED) & ~np.isnan(pairs.same_answers).any(axis=1)
    assert regenerated.any() and pairs.same_answers[regenerated].max() == 1.0
    later, _ = _read(filler_ws, cut + timedelta(days=2))
    answered_later = ~np.isnan(later.same_answers).any(axis=1)
    assert later.same_answers[_pairs_of(later, REGENERATED) & answered_later].max() == 0
    assert not np.isnan(later.same_answers[_pairs_of(later, LATE_ONLY)]).all()
    # with no fields configured nothing is read
    assert _read(filler_ws, cut, item_answer_fields=[])[0].same_answers is None


def _pair_set(teacher: list[float], same: list[list[float]]) -> PairSet:
    n = len(teacher)
    return PairSet(pair_id=[f"p{i}" for i in range(n)], photo=np.zeros(n, np.int64),
                   live=np.ones(n, np.int64),
                   strength=np.ones(n), distinct_users=np.ones(n), teacher=np.array(teacher),
                   held_out=np.zeros(n, dtype=bool), same_answers=np.array(same, dtype=np.float64))


def test_the_filler_uses_item_answers_where_both_exist_and_the_probe_otherwise():
    nan = float("nan")
    # 20 judged pairs teach the fit: same theme -> 0.9, else 0.1; then unjudged pairs of each kind
    judged_same = [[float(i % 2), float(i % 2)] for i in range(20)]
    teacher = [0.9 if s[0] else 0.1 for s in judged_same] + [nan, nan, nan]
    pairs = _pair_set(teacher, judged_same + [[1.0, 1.0], [0.0, 0.0], [nan, 1.0]])
    fit = fit_item_answer_filler(pairs, ["content_theme", "vertical_domain"], ridge=1e-6)
    assert fit.weights is not None and fit.fitted_on == 20
    pooled = np.ones((2, 3))
    # a probe that says 0.5 to every pair (only the intercept of its features is non-zero)
    probe = ProbeFit(weights=np.array([0.0] * 6 + [0.5]), judged=20, mae=None, mae_constant=None)
    filled = filled_transferability(pairs, pooled, probe, fit)
    assert filled[:20].tolist() == teacher[:20]  # judged pairs keep the teacher's score
    assert filled[20] == pytest.approx(0.9, abs=1e-3) and filled[21] == pytest.approx(0.1, abs=1e-3)
    assert filled[22] == pytest.approx(0.5)  # one item unanswered: the probe
    sources = [FILL_SOURCES[s] for s in fill_sources(pairs, fit)]
    assert sources == ["judged"] * 20 + ["item_answers", "item_answers", "probe"]
    # without an answer fit (too few judged pairs, or none read) the probe fills every unjudged pair
    none = ItemAnswerFit(["content_theme", "vertical_domain"], None, 3, None, None)
    assert [FILL_SOURCES[s] for s in fill_sources(pairs, none)][20:] == ["probe"] * 3
    assert filled_transferability(pairs, pooled, probe)[20:].tolist() == pytest.approx([0.5] * 3)


def test_the_fit_reports_what_each_source_filled_and_its_auc(filler_ws):
    from rgcd.training.stage2 import fit_at, training_cut

    s = Settings()
    cfg = s.transfer.model_copy(update={"dim": 8, "n_queries": 2, "heads": 2, "steps": 20, "eval_every": 10,
                                        "batch_size": 64, "held_out_fraction": 0.25})
    summary = fit_at(filler_ws, s, cfg, training_cut(filler_ws)).summary
    purity = summary["purity"]
    filled = purity["filled_by"]
    assert sum(filled.values()) == summary["pairs"]["used"]
    assert filled["judged"] == purity["teacher_judged"] > 0
    assert filled["item_answers"] > 0 and filled["probe"] > 0
    assert purity["item_answers"]["weights"]["content_theme"] + purity["item_answers"]["weights"][
        "vertical_domain"] > 0.5  # same vertical -> 0.9, else 0.1 in this world's judgements
    truth = summary["transferability_vs_truth"]
    assert truth["item_answers_filled"]["pairs"] == filled["item_answers"]
    assert truth["probe_filled"]["pairs"] == filled["probe"]
    assert truth["item_answers_filled"]["auc"] == 1.0  # the answers are the true vertical here
    assert truth["unjudged"]["pairs"] == filled["item_answers"] + filled["probe"]
