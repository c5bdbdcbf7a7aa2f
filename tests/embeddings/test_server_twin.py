"""The production twin by configuration only: `retrieval.milvus_uri` at a Milvus server, same code.

The server is the packaged Milvus 2.3 standalone (conftest.py's session fixture, `rgcd milvus start`'s
code): one vector field per collection, no nullable fields, consistency levels; embeddings/collections.py
handles the differences.
"""

from __future__ import annotations

import pytest
import serving_world as w
from milvus_backends import new_database
from servers import free_port, stop

from embeddings.collections import RoomVectors
from embeddings.publish import publish
from embeddings.retrieval import Retriever


@pytest.mark.slow
def test_publish_and_retrieve_through_a_milvus_server_uri(tmp_path, milvus_server):
    from rgcd.config import RetrievalConfig, Settings

    remote = Settings(retrieval=RetrievalConfig(default_k=10, validate_sample=8, milvus_uri=milvus_server,
                                                milvus_db=new_database(milvus_server)))
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
        assert other.dialect.split_vectors and not other.dialect.nullable  # Milvus 2.3
        assert sorted(other.client.list_collections()) == ["rooms_v1", "rooms_v1__retrieval"]
    finally:
        other.close()
    assert not publish(ws, remote).changed
    # the service with two worker processes sharing the server (a Lite file allows one process)
    w.write_config(ws, remote, default_k=5)
    port = free_port()
    proc = w.start_service(ws, port, "--workers", "2")
    try:
        for user in range(1, 9):
            status, body = w.call(port, "GET", f"/retrieve/user/{user}?at=2025-05-10T00:00:00Z")
            assert status == 200 and body["model_version"] == "v1" and len(body["candidates"]) == 5, body
    finally:
        stop(proc)
