"""`rgcd run` end to end on a tiny demo world: every built stage runs and leaves what it promises."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from rgcd import pipeline
from rgcd.cli import cli
from rgcd.config import Workspace
from rgcd.pipeline import STAGES, Stage


def _parquet_rows(path: Path) -> int:
    return pl.scan_parquet(path).select(pl.len()).collect().item() if path.exists() else 0


def _demo_data(ws: Workspace) -> None:
    assert _parquet_rows(ws.demo_data / "photo_play.parquet") > 0


def _lake(ws: Workspace) -> None:
    for table in ("user_id_set", "author_profile", "photo_meta", "live_room_meta", "photo_play",
                  "live_interaction"):
        parts = list((ws.lake / table).rglob("*.parquet"))
        assert parts and sum(_parquet_rows(p) for p in parts) > 0, table


MARTS = ("user_features_daily", "item_content", "live_schedule", "behaviour_pairs",
         "user_item_interactions", "eval_live_room", "eval_klm3_cdr")


def _marts(ws: Workspace) -> None:
    for mart in MARTS:
        assert (ws.marts / f"{mart}.parquet").exists(), mart
        # The 10-core filter leaves eval_klm3_cdr empty on a world this small (400 users, 6 days).
        assert mart == "eval_klm3_cdr" or _parquet_rows(ws.marts / f"{mart}.parquet") > 0, mart


def _registry(ws: Workspace) -> None:
    from rgcd.config import Settings
    from rgcd.featurestore.store import feature_store

    store = feature_store(ws, Settings())
    views = {v.name for v in store.list_feature_views()}
    assert {"item_content", "user_features_daily", "behaviour_pairs", "item_reasoning"} <= views
    assert (ws.feast / "online_store.db").stat().st_size > 0


def _reasoning(ws: Workspace) -> None:
    reasoning = pl.read_parquet(ws.feature_data / "item_reasoning.parquet")
    assert reasoning.height > 0 and reasoning["vertical_domain"].null_count() == 0


def _chorus_states(ws: Workspace) -> None:
    from safetensors import safe_open

    student = ws.student
    index = pl.read_parquet(student / "chorus_index.parquet")
    assert sorted(index["item_id"]) == sorted(pl.read_parquet(ws.marts / "item_content.parquet")["item_id"])
    with safe_open(student / "chorus_states.safetensors", "pt") as f:
        assert f.get_slice("chorus_states").get_shape()[:2] == [index.height, 16]
    report = json.loads((ws.reports / "distill.json").read_text())
    assert report["items_encoded"] == index.height and report["held_out_items"] > 0


def _metrics_and_report(ws: Workspace) -> None:
    runs = [p.parent for p in ws.reports.glob("*/metrics.json")]
    assert len(runs) == 1, runs
    doc = json.loads((runs[0] / "metrics.json").read_text())
    assert "live-room" in doc["protocols"]
    klm3_rows = _parquet_rows(ws.marts / "eval_klm3_cdr.parquet")
    assert ("klm3-cdr" in doc["protocols"]) == (klm3_rows > 0)
    assert ("klm3-cdr" in doc["skipped"]) == (klm3_rows == 0)
    expected = {"popularity", "creator_link", "creator_link_popularity", "bpr_mf", "content_mm",
                "content_text", "uniembed", "emcdr", "rgcd", "rgcd-no-reasoning", "rgcd-no-decomposition",
                "rgcd-no-routing", "rgcd-no-stage2"}
    assert expected <= set(doc["protocols"]["live-room"])
    assert doc["cases"]["live-room"]["all"] > 0 and doc["strongest"]["live-room"]["all"]["model"]
    assert "rgcd" in doc["intervals"]["live-room"]["all"]["models"]  # against the strongest baseline
    md = (runs[0] / "report.md").read_text()
    assert "the strongest baseline is" in md and "| uniembed |" in md


def _embeddings(ws: Workspace) -> None:
    """Stage 2 filled item_embeddings, so the `training` service returns frames with vectors."""
    from rgcd.config import Settings
    from rgcd.featurestore import store as fs

    emb = pl.read_parquet(ws.feature_data / "item_embeddings.parquet")
    assert emb.height == pl.read_parquet(ws.marts / "item_content.parquet").height
    assert pl.read_parquet(ws.feature_data / "user_embeddings.parquet").height > 0
    users = pl.read_parquet(ws.marts / "user_features_daily.parquet").select("user_id").head(3)
    entities = users.with_columns(pl.lit(emb["item_id"][0]).alias("item_id"),
                                  pl.lit(emb["event_timestamp"][0]).alias("event_timestamp"))
    got = fs.frame(fs.feature_store(ws, Settings()), entities, service="training")
    assert got["item_embeddings__model_version"].to_list() == [emb["model_version"][0]] * 3


def _collection(ws: Workspace) -> None:
    version = pl.read_parquet(ws.feature_data / "item_embeddings.parquet")["model_version"][0]
    _serving_answers_after_the_run(ws.root, version)
    _the_servers_log_is_quiet(ws)


# Third-party chatter a server's log must not carry: tqdm bars (weight loading), gRPC's GOAWAY and
# keep-alive lines, Python warnings.
_CHATTER = ("%|", "GOAWAY", "too_many_pings", "Loading weights", "Warning", "\x1b[")


def _the_servers_log_is_quiet(ws: Workspace) -> None:
    """A real `rgcd serve`: a room started with no vectors (the student's weights load to encode it),
    retrievals, then SIGTERM; its whole log has none of the chatter, only its own lines."""
    import os
    import subprocess
    import sys
    import urllib.request

    sys.path.insert(0, str(Path(__file__).parent))
    from servers import free_port, stop, wait_until_healthy

    token = "log-check-token-0123456789"
    port = free_port()
    env = {**os.environ, "RGCD_WRITE_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "rgcd.cli", "-w", str(ws.root), "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_healthy(proc, f"http://127.0.0.1:{port}", 120)
        author = int(pl.read_parquet(ws.marts / "live_schedule.parquet")["author_id"][0])
        room = {"live_id": 99_999_002, "author_id": author, "live_name": "quiet show", "category_l1": "Food"}
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/rooms/start",
                                         data=json.dumps(room).encode(), headers=headers)
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert resp.status == 200 and "encoded" in resp.read().decode()
        user = pl.read_parquet(ws.feature_data / "user_embeddings.parquet")["user_id"][0]
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/retrieve/user/{user}", timeout=30) as resp:
                assert resp.status == 200
    finally:
        stop(proc)
    log = proc.stdout.read()
    assert not [c for c in _CHATTER if c in log], log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def _serving_answers_after_the_run(ws, version: str) -> None:
    """After `rgcd run`: retrieval answers from the published version with rooms on air at the asked
    time, each with a reason; a room going on air is encoded (student + stage 2) and retrievable."""
    import json
    from datetime import UTC, datetime

    import polars as pl

    from rgcd.config import Workspace
    from rgcd.embeddings.retrieval import Retriever
    from rgcd.embeddings.rooms import RoomEncoder, start_rooms

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
        (row,) = retriever.online(["live_schedule:author_id", "live_schedule:end_timestamp"], "item_id",
                                  ["live:99999001"])  # the room's interval reached the online store
        assert row["live_schedule__author_id"] == author and row["live_schedule__end_timestamp"] is None
    finally:
        retriever.close()
    # the next publish encodes the room with the version it publishes: it is in the new collection
    from rgcd.embeddings.publish import publish

    report = publish(workspace, workspace.settings())
    assert "1 rooms started since stage 2 encoded" in report.one_line(), report.one_line()
    retriever = Retriever(workspace, workspace.settings())
    try:
        assert retriever.published().collection == report.collection
        assert "live:99999001" in retriever.rooms.rooms(["live:99999001"])
    finally:
        retriever.close()



# What each built stage promises to leave in the workspace. A stage that gains code (transfer:
# item/user embeddings; publish: the Milvus collection) gets its checks here, or this test fails.
PROMISES: dict[str, list[Callable[[Workspace], None]]] = {
    "demo-data": [_demo_data],
    "ingest": [_lake],
    "build": [_marts],
    "features": [_registry],
    "reason": [_reasoning],
    "distill": [_chorus_states],
    "transfer": [_embeddings],
    "publish": [_collection],
    "evaluate": [_metrics_and_report],
}


@pytest.mark.slow
def test_run_goes_through_every_stage_and_leaves_what_each_promises(tmp_path):
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
    built = [s.name for s in STAGES if s.run is not None]
    assert set(built) == set(PROMISES), "a stage was built or removed: say what it promises in PROMISES"
    for stage in STAGES:
        if stage.run is None:
            assert f"- {stage.name}" in result.output and "not built yet" in result.output
        else:
            assert f"✓ {stage.name}" in result.output, (stage.name, result.output)
    assert "skipped:" not in result.output, result.output
    for name in built:
        for check in PROMISES[name]:
            check(Workspace(ws))


def test_a_stage_that_skips_is_reported_as_skipped_not_done(tmp_path, monkeypatch):
    def ran(ws, settings, data):
        return "3 things done"

    def skipped(ws, settings, data):
        return "skipped: nothing to do here"

    monkeypatch.setattr(pipeline, "STAGES", (Stage("alpha", "runs", ran), Stage("beta", "skips", skipped),
                                             Stage("gamma", "not there", None)))
    result = CliRunner().invoke(cli, ["--workspace", str(tmp_path / "ws"), "run"])
    assert result.exit_code == 0, result.output
    assert "✓ alpha" in result.output and "3 things done" in result.output
    assert "- beta" in result.output and "skipped: nothing to do here" in result.output
    assert "✓ beta" not in result.output and "✓ gamma" not in result.output


def test_run_stops_with_the_stage_error_and_its_exit_code(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "user_id_set.csv").write_text("user_id\n1\n")
    result = CliRunner().invoke(cli, ["--workspace", str(tmp_path / "ws"), "run", "--data", str(raw)])
    assert result.exit_code == 2
    assert "✗ ingest" in result.output and "author_profile" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
