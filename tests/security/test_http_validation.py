"""Issue 25: every HTTP input is checked before Milvus or Feast is touched, a write that fails halfway
is undone, and every error has one shape: {"error", "message"}, a 4xx for the client's fault, inputs
echoed cut short, no filesystem path, URI or traceback.

Before: plain-text 500s for out-of-range ids and times, rooms written to Milvus before the crash
(`live:99999999999999999999` served to 4 of 30 users), unknown routes answering {"detail"}, an 8 KB
`at` echoed whole, absolute paths in 503s, a Swagger page loaded from a CDN."""

from __future__ import annotations

import json
import time

import pytest
import serving_world as w
from fastapi.testclient import TestClient
from hostile import ATTACKER_ROOM, written_state

from rgcd.embeddings.service import create_app

TOKEN = "s3cret-token-for-tests-only"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
AT = f"{w.T0:%Y-%m-%dT%H:%M:%SZ}"


@pytest.fixture(scope="module")
def client(world, settings):
    with TestClient(create_app(world, settings, TOKEN), raise_server_exceptions=False) as c:
        yield c


def _room(**changes) -> dict:
    vector = w.topic_vector(2)
    room = {"live_id": ATTACKER_ROOM, "author_id": 501, "transferable": vector,
            "residual": [1.0, 0.0, 0.0, 0.0], "retrieval": vector, "model_version": "v1"}
    return {k: v for k, v in (room | changes).items() if v is not None}


def _error(got, status: int) -> dict:
    assert got.status_code == status, got.text
    assert got.headers["content-type"] == "application/json"
    body = got.json()
    assert set(body) == {"error", "message"}, body
    assert "Traceback" not in body["message"] and "/tmp" not in body["message"], body
    return body


HOSTILE_ROOMS = {
    "live_id above int64": _room(live_id=99999999999999999999),
    "negative live_id": _room(live_id=-5),
    "item_id with a superscript digit": _room(live_id=None, item_id="live:²"),
    "item_id and live_id disagree": _room(item_id="live:123"),
    "author id --5": _room(author_id="--5"),
    "author id above int64": _room(author_id=2**64),
    "start in year 2999": _room(start_timestamp="2999-01-01T00:00:00Z"),
    "start far before any room": _room(start_timestamp="1970-01-02T00:00:00Z"),
    "start as epoch ms out of range": _room(start_timestamp=99999999999999999999),
    "transferable of the wrong length": _room(transferable=[1.0, 0.0, 0.0]),
    "retrieval of the wrong length": _room(retrieval=[1.0] + [0.0] * 99),
    "residual of the wrong length": _room(residual=[1.0]),
    "vector 1000x a unit vector": _room(retrieval=[1000 * x for x in w.topic_vector(1)]),
    "a zero vector": _room(transferable=[0.0] * w.DIM),
    "a 400-digit integer in a vector": _room(retrieval=[10**400] + [0] * (w.DIM - 1)),
    "a vector of strings": _room(retrieval=["1"] * w.DIM),
    "a vector of booleans": _room(retrieval=[True] + [False] * (w.DIM - 1)),
    "a name that is not a string": _room(live_name={"$gt": 1}),
    "a name of 100 kB": _room(live_name="x" * 100_000),
    "the same room twice": [_room(), _room()],
    "one good room and one bad": [_room(live_id=ATTACKER_ROOM + 1), _room(author_id="x")],
    "2,000 rooms": [_room(live_id=ATTACKER_ROOM + n) for n in range(2000)],
}


@pytest.mark.parametrize("name", list(HOSTILE_ROOMS))
def test_a_hostile_room_is_refused_with_4xx_before_anything_is_written(client, world, settings, name):
    before = written_state(world, settings)
    body = _error(client.post("/rooms/start", content=json.dumps(HOSTILE_ROOMS[name]), headers=AUTH), 422)
    assert len(body["message"]) < 600
    assert written_state(world, settings) == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_vectors_are_refused(client, world, settings, literal):
    before = written_state(world, settings)
    text = json.dumps(_room()).replace(str(w.topic_vector(2)[0]), literal, 1)
    assert literal in text
    body = _error(client.post("/rooms/start", content=text, headers=AUTH), 422)
    assert "finite" in body["message"]
    assert written_state(world, settings) == before


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"[]", b"[1, 2]", b'"room"', b"null",
                                  b"[" * 200_000])
def test_a_body_that_is_no_room_is_422(client, body):
    _error(client.post("/rooms/start", content=body, headers=AUTH), 422)


@pytest.mark.parametrize("path", [
    "/retrieve/user/99999999999999999999", "/retrieve/user/-1",
    f"/retrieve/user/1?at={'9' * 20}", "/retrieve/user/1?at=0001-01-01T00:00:00%2B14:00",
    "/retrieve/user/1?at=9999-12-31T23:59:59-14:00", "/retrieve/user/1?at=2999-01-01T00:00:00Z",
    "/retrieve/user/1?at=0", "/retrieve/user/1?at=-86400000", "/retrieve/item/photo:²",
    "/retrieve/item/photo:99999999999999999999", "/retrieve/user/1?k=99999999999999999999",
    f"/retrieve/user/1?at={AT}&k=-1",
])
def test_hostile_request_parameters_are_422_json(client, path):
    _error(client.get(path), 422)


def test_a_far_past_at_costs_no_more_than_a_current_request(client):
    """`at` before the oldest room kept is refused at once (nothing was on air; answering would walk
    every ended room), so 8 clients asking at=0 cannot starve the others."""
    t0 = time.perf_counter()
    for _ in range(8):
        _error(client.get("/retrieve/user/1?at=0"), 422)
    far_past = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(8):
        assert client.get(f"/retrieve/user/1?at={AT}").status_code == 200
    current = time.perf_counter() - t0
    assert far_past <= 2 * current + 0.5, (far_past, current)


def test_an_8kb_input_is_echoed_cut_short(client):
    body = _error(client.get("/retrieve/user/1?at=" + "x" * 8192), 422)
    assert len(body["message"]) < 400 and "8,192 characters" in body["message"]


def test_unknown_routes_and_methods_have_the_one_error_shape(client):
    assert _error(client.get("/no/such/route"), 404)["error"] == "NotFound"
    assert _error(client.delete("/health"), 405)["error"] == "MethodNotAllowed"


def test_no_cdn_documentation_page_and_the_openapi_document_stays(client):
    for page in ("/docs", "/redoc"):
        got = client.get(page)
        assert got.status_code == 404 and "cdn" not in got.text.lower()
    routes = client.get("/openapi.json").json()["paths"]
    assert {"/retrieve/user/{user_id}", "/rooms/start"} <= set(routes)


def test_an_unexpected_error_is_a_500_without_its_text(client, monkeypatch):
    from rgcd.embeddings.retrieval import Retriever

    def boom(*args, **kwargs):
        raise RuntimeError("boom in /home/someone/secret/file.py with http://user:pw@milvus:19530")

    monkeypatch.setattr(Retriever, "plan_user", boom)  # what the service calls
    body = _error(client.get(f"/retrieve/user/1?at={AT}"), 500)
    assert body["error"] == "InternalError" and "boom" not in body["message"]


def test_errors_name_no_path_or_uri(world, settings):
    """Nothing published under the alias asked for: a 503 whose message names neither the workspace
    nor the Milvus URI (which can carry credentials)."""
    other = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(
        update={"alias": "nothing_here"})})
    with TestClient(create_app(world, other, TOKEN), raise_server_exceptions=False) as c:
        body = _error(c.get("/health"), 503)
    assert str(world.root) not in body["message"] and "rooms.db" not in body["message"]
    assert body["error"] == "NotPublished"


@pytest.mark.parametrize("failing", ["milvus", "schedule", "log"])
def test_a_room_start_that_fails_halfway_is_undone(world, settings, monkeypatch, failing):
    """A write step that fails (Milvus, the online schedule push, the log) leaves no trace of the
    room: not in Milvus, not in the online store, not in the log of started rooms."""
    from rgcd.embeddings import rooms as rooms_module
    from rgcd.embeddings.milvus_store import RoomVectors
    from rgcd.embeddings.retrieval import Retriever

    def fail(*args, **kwargs):
        raise OSError(f"{failing} is down")

    target = {"milvus": (RoomVectors, "upsert_on_air"), "schedule": (rooms_module, "_push_schedule"),
              "log": (rooms_module, "_record")}[failing]
    item = f"live:{ATTACKER_ROOM + 7}"
    retriever = Retriever(world, settings)
    try:
        before = written_state(world, settings)
        monkeypatch.setattr(*target, fail)
        with pytest.raises(OSError, match="is down"):
            rooms_module.start_rooms(retriever, [_room(live_id=ATTACKER_ROOM + 7)])
        monkeypatch.undo()
        after = written_state(world, settings)
        assert (after["milvus_rows"], after["log"]) == (before["milvus_rows"], before["log"])
        assert not retriever.rooms.rooms([item])
        features = ["item_embeddings:retrieval", "item_embeddings:model_version", "live_schedule:author_id",
                    "live_schedule:start_timestamp"]
        (row,) = retriever.online(features, "item_id", [item])
        assert set(row.values()) == {None}, row
    finally:
        retriever.close()
