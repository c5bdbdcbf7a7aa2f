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
    _serving_answers_after_the_run(ws, emb["model_version"][0])


def _serving_answers_after_the_run(ws, version: str) -> None:
    """After `rgcd run`: retrieval answers from the published version with rooms on air at the asked
    time, each with a reason; a room going on air is encoded (student + stage 2) and retrievable."""
    import json
    from datetime import UTC, datetime

    import polars as pl

    from embeddings.retrieval import Retriever
    from embeddings.rooms import RoomEncoder, start_rooms
    from rgcd.config import Workspace

    schedule = pl.read_parquet(ws / "marts" / "live_schedule.parquet")
    at = schedule["start_timestamp"].max()  # a time with at least one room on air
    user = pl.read_parquet(ws / "feature_data" / "user_embeddings.parquet")["user_id"][0]
    out = CliRunner().invoke(cli, ["--workspace", str(ws), "retrieve", "--user", str(user), "--at",
                                   at.isoformat(), "--k", "5", "--json"])
    assert out.exit_code == 0, out.output
    answer = json.loads(out.stdout)
    assert answer["model_version"] == version and answer["source"] == "user_vector"
    intervals = {r["item_id"]: (r["start_timestamp"], r["end_timestamp"])
                 for r in schedule.iter_rows(named=True)}
    assert answer["candidates"]
    for c in answer["candidates"]:
        start, end = intervals[c["item_id"]]
        assert start <= at and (end is None or at < end) and c["reason"]
    photo = pl.read_parquet(ws / "feature_data" / "item_embeddings.parquet").filter(
        pl.col("domain") == "photo")["item_id"][0]
    out = CliRunner().invoke(cli, ["--workspace", str(ws), "retrieve", "--item", photo,
                                   "--at", at.isoformat(), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["source"] == "item_vector", out.output
    workspace = Workspace(ws)
    retriever = Retriever(workspace, workspace.settings())
    try:
        encoder = RoomEncoder(workspace, workspace.settings())
        author = int(schedule["author_id"][0])
        room = {"live_id": 99_999_001, "author_id": author, "live_name": "late show", "category_l1": "Food"}
        report = start_rooms(retriever, [room], encoder)
        assert report.vectors.startswith("encoded") and report.seconds < 5
        (row,) = retriever.online(["item_embeddings:transferable", "item_embeddings:model_version"],
                                   "item_id", ["live:99999001"])
        assert row["item_embeddings__model_version"] == version
        hits = retriever.rooms.search("transferable", list(row["item_embeddings__transferable"]),
                                      datetime.now(UTC), 1)
        assert hits[0].item_id == "live:99999001"
    finally:
        retriever.close()


def test_run_stops_with_the_stage_error_and_its_exit_code(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "user_id_set.csv").write_text("user_id\n1\n")
    result = CliRunner().invoke(cli, ["--workspace", str(tmp_path / "ws"), "run", "--data", str(raw)])
    assert result.exit_code == 2
    assert "✗ ingest" in result.output and "author_profile" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
