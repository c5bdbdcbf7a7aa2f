"""`rgcd run` end to end on a tiny demo world: every built stage runs, the others say so."""

import pytest
import yaml
from click.testing import CliRunner

from rgcd.cli import cli
from rgcd.pipeline import STAGES


@pytest.mark.slow
def test_run_goes_through_every_stage(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    small = {
        "demo": {"users": 400, "days": 6, "seed": 3},
        "student": {"steps": 40, "max_train_items": 300, "eval_items": 40},
        "transfer": {"steps": 40, "batch_size": 128, "checkpoint_every": 20},
        "evaluation": {"seeds": [0], "mf_samples": 2**15, "contrastive_samples": 2**14,
                       "text_max_items": 200},
    }
    (ws / "rgcd.yaml").write_text(yaml.safe_dump(small))
    result = CliRunner().invoke(cli, ["--workspace", str(ws), "run"])
    assert result.exit_code == 0, result.output
    for stage in STAGES:
        if stage.run is None:
            assert f"{stage.name}" in result.output and "not built yet" in result.output
        else:
            assert f"✓ {stage.name}" in result.output, stage.name
    assert any((ws / "lake" / "photo_play").rglob("*.parquet"))
    assert (ws / "demo_data" / "photo_play.parquet").exists()
    # stage 2 filled item_embeddings, so the `training` service now returns frames with vectors
    import json

    import polars as pl

    from rgcd.config import Settings, Workspace
    from rgcd.featurestore import store as fs

    emb = pl.read_parquet(ws / "feature_data" / "item_embeddings.parquet")
    items = pl.read_parquet(ws / "marts" / "item_content.parquet")
    assert emb.height == items.height
    users = pl.read_parquet(ws / "marts" / "user_features_daily.parquet").select("user_id").head(3)
    entities = users.with_columns(pl.lit(emb["item_id"][0]).alias("item_id"),
                                  pl.lit(emb["event_timestamp"][0]).alias("event_timestamp"))
    got = fs.frame(fs.feature_store(Workspace(ws), Settings()), entities, service="training")
    assert got["item_embeddings__model_version"].to_list() == [emb["model_version"][0]] * 3
    metrics = json.loads(next((ws / "reports").glob("*/metrics.json")).read_text())
    assert {"rgcd", "rgcd-no-reasoning", "rgcd-no-decomposition", "rgcd-no-routing"} <= set(
        metrics["protocols"]["live-room"])


def test_run_stops_with_the_stage_error_and_its_exit_code(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "user_id_set.csv").write_text("user_id\n1\n")
    result = CliRunner().invoke(cli, ["--workspace", str(tmp_path / "ws"), "run", "--data", str(raw)])
    assert result.exit_code == 2
    assert "✗ ingest" in result.output and "author_profile" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
