"""The production twin by configuration only: `retrieval.milvus_uri` at a Milvus server, same code.

The server is the packaged Milvus 2.3 standalone (conftest.py's session fixture, `rgcd milvus start`'s
code): one vector field per collection, no nullable fields, consistency levels; embeddings/milvus_store.py
handles the differences.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import serving_world as w
from milvus_backends import new_database
from servers import free_port, stop

from rgcd.embeddings.milvus_store import RoomVectors
from rgcd.embeddings.publish import publish
from rgcd.embeddings.retrieval import Retriever


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


@pytest.mark.slow
def test_rgcd_milvus_start_status_stop_keeps_the_server_off_the_machines_network(tmp_path):
    """`rgcd milvus start` runs the server with its data in the workspace, in a network namespace of its
    own (its listeners are invisible to this machine's), reachable through 127.0.0.1:port only; `stop`
    ends it by its launcher's pid."""
    import json
    import os

    from click.testing import CliRunner

    from rgcd.cli import cli
    from rgcd.embeddings import milvus_server as ms

    port = free_port()
    run = CliRunner()
    args = ["-w", str(tmp_path), "milvus"]
    try:
        out = run.invoke(cli, [*args, "start", "--port", str(port)])
        assert out.exit_code == 0 and f"http://127.0.0.1:{port}" in out.output, out.output
        status = run.invoke(cli, [*args, "status", "--json"])
        got = json.loads(status.stdout)
        assert status.exit_code == 0 and got["running"] and got["version"].startswith("v2.3")
        assert got["data_dir"] == str(tmp_path / "milvus-server") and got["rss_mib"] > 50
        assert (tmp_path / "milvus-server" / "data").is_dir()
        inside = os.readlink(f"/proc/{got['server_pid']}/ns/net")
        assert inside != os.readlink("/proc/self/ns/net")  # the server's sockets live elsewhere
        # there it binds every interface (0.0.0.0:19530), and its namespace has no interface but loopback
        server_net = Path(f"/proc/{got['server_pid']}/net")
        assert ms.INNER_PROXY in _listening(server_net / "tcp6") | _listening(server_net / "tcp")
        devices = (server_net / "dev").read_text().splitlines()[2:]
        assert [line.split(":")[0].strip() for line in devices] == ["lo"]
        assert port in _listening(Path("/proc/self/net/tcp"))  # the launcher's door, here
        again = run.invoke(cli, [*args, "start", "--port", str(port)])  # already running: the same one
        assert again.exit_code == 0 and str(got["pid"]) in again.output
    finally:
        out = run.invoke(cli, [*args, "stop"])
    assert out.exit_code == 0 and "stopped" in out.output, out.output
    assert ms.proc_start_ticks(got["pid"]) is None and ms.proc_start_ticks(got["server_pid"]) is None
    assert run.invoke(cli, [*args, "status"]).exit_code == 1


def _listening(table: Path) -> set[int]:
    """Ports with a listening socket in a /proc/<pid>/net/tcp{,6} table."""
    rows = [line.split() for line in table.read_text().splitlines()[1:]]
    return {int(r[1].rsplit(":", 1)[1], 16) for r in rows if r[3] == "0A"}


@pytest.mark.slow
def test_publish_under_load_answers_every_request(tmp_path, milvus_server):
    """With a server URI, a publish builds the new version beside the old, validates it and moves the
    alias while `rgcd serve` (2 workers) answers 4 clients: no request fails, every answer comes from one
    version, and the answers move from v1 to v2."""
    import time
    from datetime import UTC, datetime, timedelta

    from rgcd.config import RetrievalConfig, Settings

    remote = Settings(retrieval=RetrievalConfig(default_k=10, validate_sample=8, milvus_uri=milvus_server,
                                                milvus_db=new_database(milvus_server)))
    ws = w.build(tmp_path / "ws", remote)
    publish(ws, remote)
    w.write_config(ws, remote, default_k=10)  # readers trust their view of the alias for cache_s = 1 s
    port = free_port()
    proc = w.start_service(ws, port, "--workers", "2")
    paths = ([f"/retrieve/user/{u}?at=2025-05-10T00:00:00Z" for u in w.USERS_WITH_VECTORS]
             + [f"/retrieve/item/photo:{p}?at=2025-05-10T00:00:00Z" for p in range(1, 61, 3)])
    try:
        with w.Load(port, paths, clients=4) as load:
            time.sleep(2)
            w.write_vectors(ws, "v2", seed=1, created=datetime.now(UTC) + timedelta(seconds=1))
            t_publish = time.monotonic()
            report = publish(ws, remote)
            t_switched = time.monotonic()
            time.sleep(3)  # beyond cache_s: every reader sees the new alias
    finally:
        stop(proc)
    assert report.model_version == "v2" and report.previous == "rooms_v1"
    records = load.records
    failed = [r for r in records if r[2] != 200]
    during = sorted(r[1] for r in records if t_publish <= r[0] <= t_switched)
    p99 = during[max(0, int(len(during) * 0.99) - 1)] * 1000 if during else 0
    print(f"publish under load: {len(records)} requests, {len(failed)} failed, publish "
          f"{t_switched - t_publish:.1f} s, p99 during it {p99:.0f} ms")
    assert not failed, failed[:5]
    versions = [r[3] for r in sorted(records)]
    assert versions[0] == "v1" and versions[-1] == "v2" and set(versions) == {"v1", "v2"}
    assert len(during) > 10  # the service answered while the publish ran


def test_the_relay_sends_small_frames_at_once():
    """The launcher's relay sets TCP_NODELAY on the connections it accepts: asyncio does so only for
    sockets made with proto=IPPROTO_TCP, and with Nagle on, ~1% of searches through the relay waited
    40 ms for the client's delayed ACK (docs/serving.md, Speed)."""
    import asyncio
    import socket

    from rgcd.embeddings.milvus_server import relay_listener

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted = writer.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listener = relay_listener(free_port())
        server = await asyncio.start_server(handle, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            value = await asyncio.wait_for(seen, 10)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0


@pytest.mark.slow
def test_a_published_hnsw_index_is_built_validated_and_searched_with_its_ef(tmp_path, milvus_server):
    """`retrieval.index.type: HNSW` on a server: publish flushes the rows, waits until every sealed row
    is indexed (both collections on 2.3), validates and records the search parameters it validated;
    readers search with them (ef raised to k) and get the rooms on air."""
    from rgcd.config import IndexConfig, RetrievalConfig, Settings

    remote = Settings(retrieval=RetrievalConfig(default_k=10, validate_sample=8, milvus_uri=milvus_server,
                                                milvus_db=new_database(milvus_server),
                                                index=IndexConfig(type="HNSW", hnsw_ef=16)))
    ws = w.build(tmp_path / "ws", remote)
    publish(ws, remote)
    store = RoomVectors.connect(ws, remote)
    try:
        current = store.current()
        assert current.index == "HNSW" and dict(current.search) == {"ef": 16}
        assert current.search_params("retrieval", 50) == {"metric_type": "IP", "params": {"ef": 50}}
        for physical, fields in store._physical(current.collection).items():
            for field in fields:
                index = store.client.describe_index(physical, field)
                assert index["index_type"] == "HNSW" and index["pending_index_rows"] == 0, index
        hits = store.search("retrieval", w.topic_vector(1), w.T0, 10)
        assert len(hits) == 10
        for hit in hits:
            start, end = w.room_interval(hit.item_id)
            assert start <= w.T0 and (end is None or end > w.T0)
    finally:
        store.close()
    assert not publish(ws, remote).changed  # the same rows and index: nothing to do
    # another index asked: the version is built again beside the one readers search
    flat = remote.retrieval.model_copy(update={"index": IndexConfig()})
    exact = remote.model_copy(update={"retrieval": flat})
    report = publish(ws, exact)
    assert report.changed and report.collection == "rooms_v1_2" and report.previous == "rooms_v1"
    store = RoomVectors.connect(ws, exact)
    try:
        assert store.current().index == "FLAT"
    finally:
        store.close()


def _hnsw_recall(uri: str, rooms: int, dim: int = 16, spread: float = 0.5, k: int = 20) -> tuple[float, dict]:
    """Recall of an HNSW collection of `rooms` rooms, all on air (8 clusters of `spread` in `dim`
    dimensions), against the exact top k of 20 queries, and what Milvus says of its retrieval index
    after `flush`."""
    import numpy as np

    from rgcd.config import IndexConfig
    from rgcd.embeddings.milvus_store import Room, RoomStats

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(8, dim))[rng.integers(0, 8, rooms)] + rng.normal(size=(rooms, dim)) * spread
    vectors = vectors.astype(np.float32)
    on_air = [Room(f"live:{i}", i, w.T0 - timedelta(hours=1), None, 1.0, v, v)
              for i, v in enumerate(vectors.tolist())]
    store = RoomVectors(uri, "live_rooms", cache_s=0, db_name=new_database(uri))
    try:
        name = store.create("hnsw", dim, dim, index=IndexConfig(type="HNSW", hnsw_ef=64))
        store.insert_window(name, on_air, 1000, store.begin_insert(name, RoomStats.of(on_air)))
        store.flush(name)
        index = store.client.describe_index(store._holding(name, "retrieval"), "retrieval")
        store.validate(name, rooms, on_air[:: rooms // 10])
        store.mark_published(name, rooms, 0)
        store.switch_alias(name)
        found = []
        for q in vectors[:20]:
            exact = set(np.argsort(-(vectors @ q))[:k].tolist())
            hits = store.search("retrieval", q.tolist(), w.T0, k)
            found.append(len(exact & {int(h.item_id.split(":")[1]) for h in hits}) / k)
        return float(np.mean(found)), index
    finally:
        store.close()


@pytest.mark.slow
def test_hnsw_over_thousands_of_rooms_keeps_recall_against_exact(milvus_server):
    """Rooms enough for Milvus to index their segment: after `flush` every row is indexed, and HNSW's
    top 20 holds at least 95% of the exact top 20."""
    recall, index = _hnsw_recall(milvus_server, 3000)
    assert index["indexed_rows"] == index["total_rows"] == 3000, index
    assert recall >= 0.95


@pytest.mark.slow
def test_rooms_in_a_segment_too_small_to_index_are_searched_exactly(milvus_server):
    """Milvus leaves segments under 1,024 rows unindexed; the twin searches them exactly (its template's
    interim IVF, 16 of 128 lists probed, is off), so a small HNSW collection answers as FLAT would, even
    over vectors with no structure."""
    recall, _ = _hnsw_recall(milvus_server, 1000, dim=64, spread=10.0, k=100)
    assert recall == 1.0


def test_milvus_lite_publishes_flat_whatever_index_is_asked(tmp_path):
    """Milvus Lite searches exactly whatever it is told; the collection says FLAT, and readers send no
    approximate search parameters."""
    from rgcd.config import IndexConfig

    store = RoomVectors(str(tmp_path / "rooms.db"), "live_rooms")
    try:
        name = store.create("v1", 4, 4, index=IndexConfig(type="HNSW"))
        published = store._describe(name)
        assert published.index == "FLAT" and published.search == ()
        assert published.search_params("retrieval", 10) == {"metric_type": "IP"}
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("index", ["FLAT", "HNSW"])
def test_validation_refuses_a_collection_whose_vectors_are_not_the_rooms(tmp_path, milvus_server, index):
    """A sampled room whose published vector does not find it (here: the sample's vector negated)
    stops the publish before the alias moves, and the message says what was found and what to do."""
    import numpy as np

    from rgcd.config import IndexConfig
    from rgcd.embeddings.milvus_store import Room, RoomStats, VectorStoreError

    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32).tolist()
    rooms = [Room(f"live:{i}", i, w.T0 - timedelta(hours=1), None, 1.0, v, v) for i, v in enumerate(vectors)]
    store = RoomVectors(milvus_server, "live_rooms", cache_s=0, db_name=new_database(milvus_server))
    try:
        name = store.create("v1", 8, 8, index=IndexConfig(type=index))
        store.insert_window(name, rooms, 50, store.begin_insert(name, RoomStats.of(rooms)))
        store.flush(name)
        store.validate(name, 50, rooms[:5])  # the rooms themselves pass
        wrong = Room("live:3", 3, rooms[3].start, None, 1.0, [-x for x in vectors[3]], vectors[3])
        with pytest.raises(VectorStoreError) as err:
            store.validate(name, 50, [wrong])
        message = str(err.value)
        assert "the vector of live:3 found" in message and "run `rgcd publish` again" in message
        assert ("not among the first 10" in message) == (index == "HNSW")
        assert store.alias_target() is None
    finally:
        store.close()
