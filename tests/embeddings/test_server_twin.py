"""The production twin by configuration only: `retrieval.milvus_uri` at a Milvus server, same code.

`milvus-lite server` runs as its own process on 127.0.0.1 and is stopped by its pid.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serving_world as w
from servers import free_port, stop

from rgcd.embeddings.milvus_store import RoomVectors
from rgcd.embeddings.publish import publish
from rgcd.embeddings.retrieval import Retriever

MILVUS_LITE = Path(sys.executable).with_name("milvus-lite")



@pytest.fixture
def milvus_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen([str(MILVUS_LITE), "server", "--data-dir", str(tmp_path / "milvus-data"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"milvus-lite server did not start: {proc.stdout.read()}")
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    stop(proc, 20)


@pytest.mark.slow
def test_publish_and_retrieve_through_a_milvus_server_uri(tmp_path, settings, milvus_server):
    remote = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(
        update={"milvus_uri": milvus_server})})
    ws = w.build(tmp_path / "ws", remote)
    report = publish(ws, remote)
    assert report.rooms == 40 and report.collection == "rooms_v1"
    assert not (ws.milvus / "rooms.db").exists()  # nothing went to the embedded file
    retriever = Retriever(ws, remote)
    try:
        answer = retriever.for_user(2, at=w.T0)
        assert answer.model_version == "v1" and answer.source == "user_vector"
        for c in answer.candidates:
            start, end = w.room_interval(c.item_id)
            assert start <= w.T0 and (end is None or end > w.T0)
        assert retriever.for_item("photo:8", at=w.T0).candidates
    finally:
        retriever.close()
    # a second client (another process in production) sees the same published alias
    other = RoomVectors.connect(ws, remote)
    try:
        assert other.current().model_version == "v1" and other.count("rooms_v1") == 40
    finally:
        other.close()
    assert not publish(ws, remote).changed
    # the service with two worker processes sharing the server (a Lite file allows one process)
    (ws.root / "rgcd.yaml").write_text(f"retrieval:\n  milvus_uri: {milvus_server}\n  default_k: 5\n")
    port = free_port()
    proc = w.start_service(ws, port, "--workers", "2")
    try:
        for user in range(1, 9):
            status, body = w.call(port, "GET", f"/retrieve/user/{user}?at=2025-05-10T00:00:00Z")
            assert status == 200 and body["model_version"] == "v1" and len(body["candidates"]) == 5, body
    finally:
        stop(proc)
