"""Online features: incremental materialization, the SDK, and `feast serve` over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from feast_marts import write_mart, write_two_rooms
from servers import free_port, stop, wait_until_healthy

from rgcd.config import Settings, Workspace
from rgcd.featurestore import store as fs

T = datetime(2025, 5, 10, tzinfo=UTC)
D = timedelta(days=1)
ITEMS = ["live:1", "live:2"]


def _users(ws: Workspace, rows: dict) -> None:
    write_mart(ws.marts, "user_features_daily", rows)


@pytest.fixture
def world(tmp_path):
    """A fresh workspace per test, applied and materialized once: tests change its marts and store."""
    ws = Workspace(tmp_path / "ws").ensure()
    _users(ws, {"user_id": [1, 1], "sv_plays_7d": [3, 8], "is_live_cold_start": [True, True],
                "event_timestamp": [T - D, T], "created_timestamp": [T - D, T]})
    write_two_rooms(ws, T, D)
    # item_reasoning and pair_reasoning are not written: their views wait for data.
    settings = Settings()
    fs.apply(ws, settings)
    store = fs.feature_store(ws, settings)
    report = fs.materialize(store)
    return ws, store, report


def test_first_materialization_loads_history_and_waits_for_missing_tables(world):
    _, _, report = world
    # behaviour_pairs is offline only (meta.feast.online: false in dbt): never materialized
    assert set(report.fresh) == {"user_features_daily", "item_content_online", "live_schedule",
                                 "item_embeddings"}
    assert set(report.waiting) == {"item_reasoning", "user_embeddings", "user_recent_videos"}
    assert "no data yet: item_reasoning" in report.one_line()


def test_sdk_reads_the_ranker_service(world):
    _, store, _ = world
    got = fs.online_features(store, "ranker", {"user_id": [1, 1], "item_id": ITEMS})
    assert got["user_features_daily__sv_plays_7d"].to_list() == [8, 8]  # the latest snapshot
    assert got["item_content__author_id"].to_list() == [10, 20]
    assert got["item_embeddings__transferable"].to_list() == [[0.5, 1.5], [2.5, 3.5]]
    assert got["item_embeddings__model_version"].to_list() == ["m7", "m7"]
    assert got["item_reasoning__key_subject"].to_list() == [None, None]


def test_ranker_in_two_reads_answers_what_the_ranker_service_does(world):
    _, store, _ = world
    items = [*ITEMS, "live:404", "live:1"]  # an unknown room and a repeated one, as rankers ask
    one = fs.online_features(store, "ranker", {"user_id": [1] * len(items), "item_id": items})
    two = fs.ranker_features(store, 1, items)
    assert two.height == len(items) and sorted(two.columns) == sorted(one.columns)
    assert two.select(one.columns).to_dicts() == one.to_dicts()
    assert two["user_features_daily__sv_plays_7d"].to_list() == [8] * len(items)


def test_a_store_ready_to_serve_has_its_start_up_heap_frozen(world):
    # The p99 of a ranker read was the garbage collector's full scans of everything start-up loaded
    # (benchmarks/feast_online.py); a serving process freezes that heap once.
    import gc

    _, store, _ = world
    gc.unfreeze()
    try:
        store.ready_to_serve()
        assert gc.get_freeze_count() > 10_000  # the imports and the registry, at least
        got = fs.online_features(store, "ranker", {"user_id": [1, 1], "item_id": ITEMS})
        assert got["item_content__author_id"].to_list() == [10, 20]  # reads as before
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def test_an_online_read_prints_no_warning_from_feasts_milvus_store(world):
    """Feast's first online read imports its Milvus online store, whose config class makes pydantic
    warn; a fresh process (the module not yet imported) reading through rgcd prints nothing."""
    ws, _, _ = world
    code = ("from rgcd.config import Settings, Workspace; from rgcd.featurestore import store as fs; "
            f"s = fs.feature_store(Workspace({str(ws.root)!r}), Settings()); "
            "print(fs.ranker_features(s, 1, ['live:1']).height)")
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "1"
    assert "Warning" not in done.stderr, done.stderr[-2000:]


def test_the_online_read_is_also_answered_as_protobuf(world):
    """POST /get-online-features/protobuf takes Feast's body and answers Feast's response message: the
    same values, statuses and names as the JSON route; an unknown service is an error in one shape."""
    from fastapi.testclient import TestClient
    from feast.feature_server import get_app
    from feast.feature_server_utils import convert_response_to_dict
    from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse

    ws, store, _ = world
    app = fs.restrict_feast_app(get_app(store, registry_ttl_sec=0), None, ws, Settings(), store=store)
    body = {"feature_service": "ranker_items", "entities": {"item_id": [*ITEMS, "live:404"]},
            "full_feature_names": True}
    with TestClient(app, raise_server_exceptions=False) as client:
        as_json = client.post("/get-online-features", json=body)
        as_protobuf = client.post(fs.PROTOBUF_READ_ROUTE, json=body)
        unknown = client.post(fs.PROTOBUF_READ_ROUTE, json={**body, "feature_service": "no_such_service"})
        assert fs.PROTOBUF_READ_ROUTE in client.get("/openapi.json").json()["paths"]
    assert as_json.status_code == 200 and as_protobuf.status_code == 200, as_protobuf.text
    assert as_protobuf.headers["content-type"] == fs.PROTOBUF_MEDIA_TYPE
    parsed = convert_response_to_dict(GetOnlineFeaturesResponse.FromString(as_protobuf.content))
    assert parsed == as_json.json()
    names = parsed["metadata"]["feature_names"]
    vectors = parsed["results"][names.index("item_embeddings__transferable")]["values"]
    assert vectors == [[0.5, 1.5], [2.5, 3.5], None]
    assert unknown.status_code == 404 and set(unknown.json()) == {"error", "message"}


def test_incremental_materialization_picks_up_new_snapshots(world):
    ws, store, first = world
    # A snapshot newer than the previous run's end (incremental runs start there).
    new = first.end + timedelta(hours=1)
    _users(ws, {"user_id": [1, 1, 1], "sv_plays_7d": [3, 8, 11], "is_live_cold_start": [True, True, False],
                "event_timestamp": [T - D, T, new], "created_timestamp": [T - D, T, new]})
    report = fs.materialize(store, end=new + timedelta(hours=1))
    assert "user_features_daily" in report.incremental and not report.fresh
    got = fs.online_features(store, "ranker", {"user_id": [1], "item_id": ["live:1"]})
    assert got["user_features_daily__sv_plays_7d"].to_list() == [11]
    assert got["user_features_daily__is_live_cold_start"].to_list() == [False]


def test_rows_written_since_the_last_run_are_loaded_even_with_past_event_times(world):
    # Historical logs (KuaiLive-M3) arrive with event times long before the last run's end (the
    # wall clock), e.g. the next day of logs or reasoning restated by a rerun; incremental runs
    # that only look at event times after that end would never load them.
    ws, store, _ = world
    view = store.get_feature_view("user_features_daily")
    last = max(end for _, end in view.materialization_intervals)
    written = last + timedelta(minutes=1)
    times = pl.read_parquet(ws.marts / "user_features_daily.parquet")["event_timestamp"].to_list()
    assert max(times) + D < last  # the new row's event time lies before the last run's end
    _users(ws, {"user_id": [1, 1, 2], "sv_plays_7d": [3, 8, 5], "is_live_cold_start": [True, True, True],
                "event_timestamp": [*times, T + D], "created_timestamp": [*times, written]})
    report = fs.materialize(store, end=written + timedelta(hours=1))
    assert "user_features_daily" in report.incremental and not report.fresh
    got = fs.online_features(store, "ranker", {"user_id": [2, 1], "item_id": ["live:1", "live:1"]})
    assert got["user_features_daily__sv_plays_7d"].to_list() == [5, 8]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_feature_server_serves_the_ranker_service_over_http(world):
    ws, store, _ = world
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rgcd.cli", "-w", str(ws.root), "features", "serve",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, base, seconds=90)
        body = _post(f"{base}/get-online-features", {
            "feature_service": "ranker", "full_feature_names": True,
            "entities": {"user_id": [1, 1], "item_id": ITEMS}})
        names = body["metadata"]["feature_names"]
        values = {n: r["values"] for n, r in zip(names, body["results"], strict=True)}
        assert values["item_id"] == ITEMS
        assert values["item_content__author_id"] == [10, 20]
        assert values["item_embeddings__model_version"] == ["m7", "m7"]
        assert values["item_embeddings__transferable"] == [[0.5, 1.5], [2.5, 3.5]]
        sdk = fs.online_features(store, "ranker", {"user_id": [1, 1], "item_id": ITEMS})
        assert values["user_features_daily__sv_plays_7d"] == sdk["user_features_daily__sv_plays_7d"].to_list()
    finally:
        stop(proc)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the server still listens after SIGTERM"


def test_the_pipeline_stage_skips_without_marts_and_runs_with_them(world, tmp_path):
    from rgcd.pipeline import STAGES

    stage = next(s for s in STAGES if s.name == "features")
    empty = Workspace(tmp_path / "empty").ensure()
    line = stage.run(empty, Settings(), None)
    assert line.startswith("skipped: marts not built yet (behaviour_pairs, item_content")
    assert not (empty.feast / "registry.db").exists()
    ws, _, _ = world
    line = stage.run(ws, Settings(), None)
    assert "applied 10 feature views, 11 feature services; materialized 4 views" in line
    assert "(0 full, 4 incremental; 4 windows)" in line


def _applied_with_items(ws: Workspace):
    """The two item marts of ITEMS at T, the repo applied; the store."""
    for mart in ("item_content", "live_schedule"):
        write_mart(ws.marts, mart, {"item_id": ITEMS, "event_timestamp": [T] * 2,
                                    "created_timestamp": [T] * 2})
    settings = Settings()
    fs.apply(ws, settings)
    return fs.feature_store(ws, settings)


def test_windowed_materialization_leaves_the_latest_value_of_the_whole_range(tmp_path):
    # Windows of 2 rows over 7 snapshots: user 1's latest value lies in the last window, user 2's
    # in the first only (no later row overwrites it), user 3 has two rows at one instant (an edge
    # cannot split them) with the later created_timestamp winning.
    ws = Workspace(tmp_path / "ws").ensure()
    times = [T - 3 * D, T - 3 * D, T - 2 * D, T - D, T - D, T, T]
    created = [*times[:5], T, T + timedelta(minutes=1)]
    _users(ws, {"user_id": [1, 2, 1, 1, 3, 3, 3], "sv_plays_7d": [1, 20, 2, 3, 30, 31, 32],
                "is_live_cold_start": [True] * 7, "event_timestamp": times, "created_timestamp": created})
    store = _applied_with_items(ws)
    view = store.get_feature_view("user_features_daily")
    edges = fs.slice_bounds(view, T - 3 * D, T + D, rows=2)
    assert edges == [T - 3 * D, T - 2 * D, T - D, T, T + D]  # every 2nd time; T's two rows in one window
    report = fs.materialize(store, end=T + D, views=["user_features_daily"], slice_rows=2)
    assert report.windows == 4 and "4 windows" in report.one_line()
    got = fs.online_features(store, "ranker", {"user_id": [1, 2, 3], "item_id": ["live:1"] * 3})
    assert got["user_features_daily__sv_plays_7d"].to_list() == [3, 20, 32]
    one = fs.materialize(store, end=T + D, views=["user_features_daily"], slice_rows=100)
    assert one.windows == 1 and one.incremental == ("user_features_daily",)


def test_a_first_load_starts_where_no_entity_has_a_later_row(tmp_path):
    # Daily snapshots of two users: every row before the last day has a later row of its own
    # user, so only the last day is loaded (one window, not three) and the values are the latest.
    ws = Workspace(tmp_path / "ws").ensure()
    times = [T - 2 * D, T - 2 * D, T - D, T - D, T, T]
    _users(ws, {"user_id": [1, 2] * 3, "sv_plays_7d": [1, 2, 3, 4, 5, 6], "is_live_cold_start": [True] * 6,
                "event_timestamp": times, "created_timestamp": times})
    store = _applied_with_items(ws)
    assert fs.superseded_before(store.get_feature_view("user_features_daily")) == T
    report = fs.materialize(store, end=T + D, views=["user_features_daily"], slice_rows=2)
    assert report.windows == 1
    got = fs.online_features(store, "ranker", {"user_id": [1, 2], "item_id": ["live:1"] * 2})
    assert got["user_features_daily__sv_plays_7d"].to_list() == [5, 6]
