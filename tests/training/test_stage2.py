"""`rgcd transfer` end to end on the tiny stage-2 world: tables, model, report, picture, rerun, online."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
import yaml
from click.testing import CliRunner
from transfer_world import build

from rgcd.cli import cli
from rgcd.config import Settings, Workspace

SMALL = {"transfer": {"dim": 8, "n_queries": 2, "heads": 2, "steps": 60, "batch_size": 64,
                      "checkpoint_every": 20},
         "evaluation": {"dim": 8, "contrastive_samples": 4096}}


@pytest.mark.slow
def test_transfer_writes_both_domains_a_retriever_and_reruns_for_free(tmp_path):
    from rgcd.featurestore import store as fs
    from rgcd.training.decomposition import ChorusStates
    from rgcd.training.published_model import load_published

    ws = Workspace(tmp_path / "ws").ensure()
    (ws.root / "rgcd.yaml").write_text(yaml.safe_dump(SMALL))
    items, _ = build(ws, photos=80, lives=30, pairs=600)
    fs.apply(ws, Settings())
    res = CliRunner().invoke(cli, ["-w", str(ws.root), "transfer"])
    assert res.exit_code == 0, res.output
    assert "trained" in res.output and "run `rgcd publish`" in res.output

    emb = pl.read_parquet(ws.feature_data / "item_embeddings.parquet")
    assert sorted(emb["item_id"]) == sorted(items["item_id"])  # every item of both domains
    assert set(emb["domain"]) == {"photo", "live"}
    for col in ("transferable", "residual", "retrieval"):
        assert emb.schema[col] == pl.List(pl.Float32) and emb[col].list.len().unique().to_list() == [8]
    assert emb.schema["event_timestamp"] == pl.Datetime("us", "UTC")
    version = emb["model_version"].unique().to_list()
    assert len(version) == 1 and version[0].startswith("rgcd-") and len(version[0]) == 13
    users = pl.read_parquet(ws.feature_data / "user_embeddings.parquet")
    assert users.schema["user_id"] == pl.Int64 and users["user_vector"].list.len().unique().to_list() == [8]
    assert users["model_version"].unique().to_list() == version

    report = json.loads((ws.reports / "transfer.json").read_text())
    fit = report["fit"]
    assert fit["purity"]["high"] + fit["purity"]["low"] == fit["pairs"]["used"]
    # no item_reasoning in this world: the teacher judged every room pair, nothing is left to fill
    assert fit["purity"]["filled_by"] == {"judged": fit["pairs"]["used"], "item_answers": 0, "probe": 0}
    assert set(fit["alignment"]) == {"transferable", "residual", "joint"}
    assert set(fit["alignment"]["transferable"]) == {"high_purity", "low_purity", "random"}
    assert (ws.reports / "transfer_projection.png").read_bytes()[:4] == b"\x89PNG"
    assert (ws.stage2_model(version[0]) / "aggregation.safetensors").exists()

    # online: untouched until `rgcd publish` (serving reads only what publish wrote)
    store = fs.feature_store(ws, Settings())
    row = emb.filter(pl.col("domain") == "live").sort("item_id").row(0, named=True)
    online = fs.online_features(store, "retrieval_item", {"item_id": [row["item_id"]]})
    assert online["item_embeddings__model_version"].to_list() == [None]

    # a room going on air: the published callable reproduces what the stage wrote for it
    states = ChorusStates(ws.student)
    room = items.filter(pl.col("item_id") == row["item_id"]).row(0, named=True)
    chorus = states.take(np.array([states.row_of[row["item_id"]]])).numpy()
    got = load_published(ws, version[0]).encode(chorus, ["live"], [room["author_id"]], [room["mm_embedding"]])
    assert got["model_version"] == version[0]
    for col in ("transferable", "residual", "retrieval"):
        assert np.allclose(got[col][0], row[col], atol=1e-5), col

    again = CliRunner().invoke(cli, ["-w", str(ws.root), "transfer"])
    assert again.exit_code == 0 and "unchanged, nothing retrained" in again.output
    assert pl.read_parquet(ws.feature_data / "item_embeddings.parquet").equals(emb)


def test_transfer_without_chorus_states_says_to_distill(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    build(ws, photos=40, lives=10, pairs=100)
    (ws.student / "chorus_states.safetensors").unlink()
    from rgcd.featurestore import store as fs

    fs.apply(ws, Settings())
    res = CliRunner().invoke(cli, ["-w", str(ws.root), "transfer"])
    assert res.exit_code == 2 and "rgcd distill" in res.output


def test_stage2_reads_every_pair_the_teacher_judged_before_sampling_the_rest(tmp_path):
    from rgcd.featurestore import store as fs
    from rgcd.training.chorus_states import ChorusStates
    from rgcd.training.stage2 import read_pairs, training_cut

    ws = Workspace(tmp_path / "ws").ensure()
    build(ws, photos=40, lives=10, pairs=300)
    judged = pl.read_parquet(ws.feature_data / "pair_reasoning.parquet").sort("pair_id").gather_every(5)
    judged.write_parquet(ws.feature_data / "pair_reasoning.parquet")
    fs.apply(ws, Settings())
    cfg = Settings().transfer.model_copy(update={"max_pairs": 100})
    pairs, counts = read_pairs(ws, Settings(), training_cut(ws) + timedelta(seconds=1),
                               ChorusStates(ws.models / "student"), cfg)
    assert counts["eligible"] > 100 == len(pairs.pair_id)
    assert int((~np.isnan(pairs.teacher)).sum()) == judged.height  # all of them, the probe fills the rest
