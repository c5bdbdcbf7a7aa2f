"""The production online store for real: a redis-server on 127.0.0.1, materialized, read by the
SDK and over HTTP (`rgcd features serve`), stopped by pid.

redis-server is Debian's package (.ci/run installs it where it is missing).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from feast_marts import write_mart, write_two_rooms
from servers import free_port, stop, wait_until_healthy

from rgcd.config import Workspace
from rgcd.featurestore import store as fs

T = datetime(2025, 5, 10, tzinfo=UTC)
D = timedelta(days=1)
ITEMS = ["live:1", "live:2"]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on a free port, data in a tmp dir, no persistence; stopped by pid."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server (.ci/run does this)")
    import redis

    port, data = free_port(), tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
                             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not answer PING in 30 s"
            time.sleep(0.2)
    yield port, client
    stop(proc)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "redis-server still listens after SIGTERM"


@pytest.fixture(scope="module")
def world(redis_server, tmp_path_factory):
    port, client = redis_server
    ws = Workspace(tmp_path_factory.mktemp("ws")).ensure()
    conf = {"features": {"online_store": "redis", "redis_connection_string": f"127.0.0.1:{port}"}}
    (ws.root / "rgcd.yaml").write_text(yaml.safe_dump(conf))  # what `rgcd features serve` reads
    settings = ws.settings()
    assert settings.features.online_store == "redis"
    write_mart(ws.marts, "user_features_daily", {
        "user_id": [1, 1], "sv_plays_7d": [3, 8], "event_timestamp": [T - D, T],
        "created_timestamp": [T - D, T]})
    write_two_rooms(ws, T, D)
    fs.apply(ws, settings)
    store = fs.feature_store(ws, settings)
    report = fs.materialize(store)
    return ws, settings, store, report, client


def test_materialize_writes_into_redis(world):
    _, _, store, report, client = world
    assert type(store._get_provider().online_store).__name__ == "RedisOnlineStore"
    assert set(report.fresh) == {"user_features_daily", "item_content_online", "live_schedule",
                                 "item_embeddings"}
    assert client.dbsize() == 1 + 2  # one hash per entity key: user 1, live:1, live:2


def test_sdk_reads_the_ranker_service_from_redis(world):
    _, _, store, _, _ = world
    got = fs.online_features(store, "ranker", {"user_id": [1, 1], "item_id": [*ITEMS]})
    assert got["user_features_daily__sv_plays_7d"].to_list() == [8, 8]
    assert got["item_content__author_id"].to_list() == [10, 20]
    assert got["live_schedule__end_timestamp"].to_list()[1] is None
    assert got["item_embeddings__transferable"].to_list() == [[0.5, 1.5], [2.5, 3.5]]
    assert got["item_embeddings__model_version"].to_list() == ["m7", "m7"]


def test_ranker_in_two_reads_from_redis_answers_what_one_read_does(world):
    _, _, store, _, _ = world
    items = [*ITEMS, "live:404"]
    one = fs.online_features(store, "ranker", {"user_id": [1] * len(items), "item_id": items})
    assert fs.ranker_features(store, 1, items).select(one.columns).to_dicts() == one.to_dicts()


def test_feature_server_reads_redis_over_http(world):
    ws, _, store, _, _ = world
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rgcd.cli", "-w", str(ws.root), "features", "serve",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, base, seconds=180)  # a loaded 2-core machine starts it slowly
        body = json.dumps({"feature_service": "ranker", "full_feature_names": True,
                           "entities": {"user_id": [1, 1, 1], "item_id": [*ITEMS, "live:404"]}}).encode()
        req = urllib.request.Request(f"{base}/get-online-features", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.loads(resp.read())
    finally:
        stop(proc)
    names = answer["metadata"]["feature_names"]
    values = {n: r["values"] for n, r in zip(names, answer["results"], strict=True)}
    assert values["item_content__author_id"] == [10, 20, None]  # an unknown room: nulls, no error
    assert values["item_embeddings__transferable"] == [[0.5, 1.5], [2.5, 3.5], None]
    sdk = fs.online_features(store, "ranker", {"user_id": [1, 1, 1], "item_id": [*ITEMS, "live:404"]})
    assert values["user_features_daily__sv_plays_7d"] == sdk["user_features_daily__sv_plays_7d"].to_list()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the feature server still listens after SIGTERM"
