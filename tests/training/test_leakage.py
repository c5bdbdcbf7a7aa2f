"""No leakage, and the same seeds give the same fits: stage 1 (teacher, student) and stage 2 see only
data before the live-room cut, so a world whose rows after the cut are garbage gives the very same
chorus states and stage-2 vectors for every item before the cut; two separate runs agree to the bit."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from stage1_world import T0, build_world

from rgcd.config import Settings, Workspace

CUT = T0 + timedelta(days=5)


def _settings() -> Settings:
    s = Settings()
    return s.model_copy(update={
        "teacher": s.teacher.model_copy(update={"free_teacher_pairs": 120, "strength_bands": 4}),
        "student": s.student.model_copy(update={
            "tiny_hidden": 32, "tiny_layers": 1, "tiny_heads": 2, "tiny_vocab": 400, "steps": 30,
            "batch_size": 16, "eval_items": 5, "encode_processes": 1}),
        "transfer": s.transfer.model_copy(update={
            "dim": 8, "n_queries": 2, "heads": 2, "steps": 60, "batch_size": 32, "eval_every": 20,
            "held_out_fraction": 0.2}),
    })


def _world(garbage: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The stage-1 world plus items that appear after the cut and pairs among them; with `garbage`,
    every row stamped at or after the cut carries random values instead."""
    items, pairs = build_world(photos=60, lives=20, pairs=300, seed=0)
    late = (items.filter(pl.col("item_id").is_in(["photo:1003", "photo:1010", "live:5002", "live:5007"]))
            .with_columns(pl.col("item_id").str.replace(r":(\d)", ":9"),
                          (pl.col("source_id") + 8000).alias("source_id"),
                          pl.lit(CUT + timedelta(hours=3)).cast(items.schema["event_timestamp"])
                          .alias("event_timestamp")))
    late = late.with_columns(pl.when(pl.col("domain") == "live").then(pl.col("event_timestamp"))
                             .alias("start_timestamp"))
    items = pl.concat([items, late])
    late_pairs = pairs.head(4).with_columns(
        pl.Series("photo_item_id", ["photo:9003", "photo:9010", "photo:9003", "photo:9010"]),
        pl.Series("target_id", ["live:9002", "live:9007", "live:9007", "live:9002"]),
        pl.lit("photo_live_room").alias("pair_type"),
        pl.lit(CUT + timedelta(hours=5)).cast(pairs.schema["event_timestamp"]).alias("event_timestamp"))
    late_pairs = late_pairs.with_columns(
        (pl.col("photo_item_id") + "|" + pl.col("target_id")).alias("pair_id"),
        pl.col("event_timestamp").alias("last_seen"))
    pairs = pl.concat([pairs, late_pairs])
    if not garbage:
        return items, pairs
    rng = np.random.default_rng(99)
    after_i = (items["event_timestamp"] >= CUT).to_numpy()
    after_p = (pairs["event_timestamp"] >= CUT).to_numpy()
    vectors = [rng.normal(size=len(v)).astype(np.float32).tolist() if a and v is not None else v
               for a, v in zip(after_i, items["mm_embedding"].to_list(), strict=True)]
    late_rows = pl.Series(after_i)
    items = items.with_columns(
        pl.when(late_rows).then(pl.lit("zzq xkcd garbage")).otherwise(pl.col("title")).alias("title"),
        pl.when(late_rows).then(pl.lit("Garbage")).otherwise(pl.col("category_l1")).alias("category_l1"),
        pl.Series("mm_embedding", vectors, dtype=items.schema["mm_embedding"]))
    pairs = pairs.with_columns(
        pl.when(pl.Series(after_p)).then(pl.Series(rng.uniform(0, 1, pairs.height)))
        .otherwise(pl.col("strength")).alias("strength"),
        pl.when(pl.Series(after_p)).then(pl.Series(rng.integers(1, 99, pairs.height)))
        .otherwise(pl.col("distinct_users")).alias("distinct_users"))
    return items, pairs


def _run(ws: Workspace, garbage: bool) -> dict:
    from rgcd.featurestore.store import apply
    from rgcd.training.chorus_states import ChorusStates
    from rgcd.training.distill import distill
    from rgcd.training.reasoning.run import reason
    from rgcd.training.stage2 import fit_at

    items, pairs = _world(garbage)
    ws.marts.mkdir(parents=True, exist_ok=True)
    items.write_parquet(ws.marts / "item_content.parquet")
    pairs.write_parquet(ws.marts / "behaviour_pairs.parquet")
    requests = [CUT - timedelta(days=1), CUT]
    pl.DataFrame({"split": ["train", "test"], "request_timestamp": requests}).write_parquet(
        ws.marts / "eval_live_room.parquet")
    settings = _settings()
    apply(ws, settings)
    reason(ws, settings, show_progress=False)
    distill(ws, settings, show_progress=False)
    fit = fit_at(ws, settings, settings.transfer, CUT)
    states = ChorusStates(ws.models / "student")
    before = sorted(items.filter(pl.col("event_timestamp") < CUT)["item_id"].to_list())
    rows = np.array([states.row_of[i] for i in before])
    return {"states": states.take(rows).numpy(), "transferable": fit.transferable[rows],
            "residual": fit.residual[rows], "losses": fit.summary["losses"],
            "alignment": fit.summary["alignment"],
            "pairs": pl.read_parquet(ws.feature_data / "pair_reasoning.parquet")["pair_id"].to_list()}


@pytest.mark.slow
def test_rows_after_the_cut_change_no_fit_and_two_runs_agree_to_the_bit(tmp_path):
    clean = _run(Workspace(tmp_path / "clean").ensure(), garbage=False)
    garbled = _run(Workspace(tmp_path / "garbage").ensure(), garbage=True)
    assert clean["pairs"] == garbled["pairs"] and len(clean["pairs"]) > 20
    for key in ("states", "transferable", "residual"):
        assert np.array_equal(clean[key], garbled[key]), key
    assert clean["losses"] == garbled["losses"] and clean["alignment"] == garbled["alignment"]
