"""The HTTP service, started as `rgcd serve` and stopped by its pid; rooms on air within 5 s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import serving_world as w
from servers import free_port, stop

from rgcd.embeddings.publish import publish

ROOT = Path(__file__).resolve().parents[2]



_call = w.call


@pytest.fixture(scope="module")
def service(tmp_path_factory, settings):
    ws = w.build(tmp_path_factory.mktemp("service"), settings)
    publish(ws, settings)
    from rgcd.embeddings.milvus_store import _LITE_CLIENTS

    assert not any(_LITE_CLIENTS.values())  # released: the service process may open the file
    port = free_port()
    (ws.root / "rgcd.yaml").write_text("retrieval:\n  default_k: 10\n  cache_s: 0.0\n")
    proc = w.start_service(ws, port)
    yield ws, port, proc
    stop(proc)
    assert proc.returncode is not None


def test_several_workers_need_a_milvus_server(tmp_path):
    from click.testing import CliRunner

    from rgcd.cli import cli

    out = CliRunner().invoke(cli, ["-w", str(tmp_path), "serve", "--workers", "2"])
    assert out.exit_code == 2 and "need a Milvus server" in out.output and "Traceback" not in out.output


@pytest.mark.slow
def test_health_version_and_retrieval_over_http(service):
    _, port, _ = service
    health = {"status": "ok", "model_version": "v1", "collection": "rooms_v1"}
    assert _call(port, "GET", "/health") == (200, health)
    assert _call(port, "GET", "/version")[1]["model_version"] == "v1"
    at = w.T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    status, body = _call(port, "GET", f"/retrieve/user/1?at={at}&k=5")
    assert status == 200 and body["source"] == "user_vector" and body["model_version"] == "v1"
    assert set(body) == {"model_version", "query", "at", "source", "candidates"}
    assert len(body["candidates"]) == 5
    for c in body["candidates"]:
        start, end = w.room_interval(c["item_id"])
        assert start <= w.T0 and (end is None or end > w.T0)
        assert set(c) == {"item_id", "author_id", "score", "reason"} and c["reason"]
    status, body = _call(port, "GET", f"/retrieve/item/photo:4?at={at}")
    assert status == 200 and body["source"] == "item_vector" and len(body["candidates"]) == 10


@pytest.mark.slow
def test_errors_are_json_with_what_to_do(service):
    _, port, _ = service
    status, body = _call(port, "GET", "/retrieve/user/999")
    assert status == 404 and "not in the online store" in body["message"]
    status, body = _call(port, "GET", "/retrieve/item/photo:99999")
    assert status == 404 and "no vector" in body["message"]
    assert _call(port, "GET", "/retrieve/user/abc")[0] == 422
    assert _call(port, "GET", "/retrieve/user/1?k=0")[0] == 422
    status, body = _call(port, "GET", "/retrieve/user/1?at=yesterday")
    assert status == 422 and "ISO 8601" in body["message"]
    assert _call(port, "GET", "/retrieve/item/live:1000")[0] == 422
    room = {"live_id": 7001, "author_id": 501, "transferable": [0.0] * w.DIM, "residual": [0.0] * 4,
            "retrieval": [0.0] * w.DIM, "model_version": "v0"}
    status, body = _call(port, "POST", "/rooms/start", room)
    assert status == 409 and "'v0'" in body["message"] and "'v1'" in body["message"]
    assert _call(port, "POST", "/rooms/live:424242/end")[0] == 404


@pytest.mark.slow
def test_a_room_going_on_air_is_retrievable_within_5_seconds_and_leaves_when_it_ends(service):
    _, port, _ = service
    user_vector = w._centres(0)[1]  # user 1's topic centre: this room beats every other for user 1
    vector = (user_vector * 10).tolist()
    room = {"live_id": 7002, "author_id": 509, "transferable": vector, "residual": [0.0] * 4,
            "retrieval": vector, "model_version": "v1"}
    t0 = time.perf_counter()
    status, body = _call(port, "POST", "/rooms/start", room)
    assert status == 200 and body["started"] == ["live:7002"]
    while True:
        status, got = _call(port, "GET", "/retrieve/user/1?k=3")
        if got["candidates"] and got["candidates"][0]["item_id"] == "live:7002":
            break
        assert time.perf_counter() - t0 < 5, got
    assert time.perf_counter() - t0 < 5
    assert _call(port, "POST", "/rooms/live:7002/end") == (200, {"item_id": "live:7002", "ended": True})
    got = _call(port, "GET", "/retrieve/user/1?k=10")[1]
    assert "live:7002" not in [c["item_id"] for c in got["candidates"]]
    assert _call(port, "POST", "/rooms/live:7002/end")[1]["ended"] is False
