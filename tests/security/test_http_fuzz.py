"""Issue 25, Deliver 9: a bounded fuzz of `rgcd serve`'s routes (a real server on 127.0.0.1, 300
seeded requests or 30 s, whichever ends first). Every request is invalid by construction: each one
must get a 4xx in the one error shape, never a 500, and none may write (Milvus rows, the online
store and the log of started rooms are the same after as before)."""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.parse

import pytest
import serving_world as w
from hostile import ATTACKER_ROOM, written_state
from servers import free_port, stop

REQUESTS, SECONDS, SEED = 300, 30.0, 25

BAD_IDS = ["99999999999999999999", "-1", "--5", "²", "١٢٣", "1e3", "0x10", "1.5", "abc", "%00",
           "'; drop", "9" * 400, "\u202e1", "null", "[]"]
BAD_TIMES = ["0", "-86400000", "99999999999999999999", "0001-01-01T00:00:00+14:00",
             "9999-12-31T23:59:59-14:00", "2999-01-01T00:00:00Z", "yesterday", "x" * 5000, "2025-13-01",
             "NaN", "1970-01-01"]
BAD_KS = ["0", "-1", "1001", "99999999999999999999", "abc", "1.5"]
VECTOR = w.topic_vector(1)
GOOD_ROOM = {"live_id": ATTACKER_ROOM, "author_id": 501, "transferable": VECTOR,
             "residual": [1.0, 0.0, 0.0, 0.0], "retrieval": VECTOR, "model_version": "v1"}
BAD_FIELDS = {
    "live_id": [2**64, -1, "²", "1.5", 1.5, None, True, [], {}],
    "author_id": ["--5", 2**63, -3, "x", None, 1.5, False],
    "start_timestamp": ["2999-01-01T00:00:00Z", "1970-01-02T00:00:00Z", 99999999999999999999, "soon", -1, {}],
    "transferable": [[], [1.0], [1000.0] * w.DIM, [float("nan")] * w.DIM, ["a"] * w.DIM, "v", [0.0] * w.DIM],
    "retrieval": [[1.0] * 3, [float("inf")] + [0.0] * (w.DIM - 1), [10.0] + [0.0] * (w.DIM - 1),
                  [None] * w.DIM],
    "residual": [[], [2.0, 0.0, 0.0, 0.0], [1.0] * 9, [10**400, 0, 0, 0]],
    "model_version": ["evil", "", 1, ["v1"]],
    "live_name": [{"$ne": 1}, "x" * 1000, 5],
    "mm_embedding": ["abc", [float("nan")], [1.0] * 5000],
}


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _request(rng: random.Random) -> tuple[str, str, bytes | None, dict]:
    """One invalid request: (method, path, body, headers)."""
    auth = {"Authorization": f"Bearer {w.TOKEN}", "Content-Type": "application/json"}
    kind = rng.randrange(8)
    if kind == 0:
        return "GET", f"/retrieve/user/{_q(rng.choice(BAD_IDS))}", None, {}
    if kind == 1:
        param = rng.choice([f"at={_q(rng.choice(BAD_TIMES))}", f"k={_q(rng.choice(BAD_KS))}"])
        return "GET", f"/retrieve/{rng.choice(['user/1', 'item/photo:4'])}?{param}", None, {}
    if kind == 2:
        item = rng.choice(["live:1000", "photo:²", "photo:", "photo:-1", "user:1", _q(rng.choice(BAD_IDS))])
        return "GET", f"/retrieve/item/{_q(item)}", None, {}
    if kind == 3:  # a room with one field made hostile, or a list with one hostile room
        field = rng.choice(list(BAD_FIELDS))
        room = GOOD_ROOM | {"live_id": ATTACKER_ROOM + rng.randrange(1000)}
        room[field] = rng.choice(BAD_FIELDS[field])
        if field in ("live_id", "author_id") and room[field] is None:
            room.pop(field)
        other = GOOD_ROOM | {"live_id": ATTACKER_ROOM + 1}  # a good room beside it is not written either
        body: object = rng.choice([room, [room], {"rooms": [other, room]}])
        return "POST", "/rooms/start", json.dumps(body).encode(), auth
    if kind == 4:  # not a room at all
        body = rng.choice([b"", b"{", bytes(rng.randrange(256) for _ in range(64)), b"[]", b"null", b"1",
                           b"[" * 100_000, json.dumps([GOOD_ROOM] * 1001).encode(), b'{"rooms": 5}'])
        return "POST", "/rooms/start", body, auth
    if kind == 5:  # a good room without the right token
        headers = rng.choice([{}, {"Authorization": "Bearer nope-nope-nope-nope"},
                              {"Authorization": w.TOKEN}, {"Authorization": f"Basic {w.TOKEN}"}])
        path = rng.choice(["/rooms/start", "/rooms/live:1000/end", "/rooms/live:1003/end"])
        return "POST", path, json.dumps(GOOD_ROOM).encode(), headers | {"Content-Type": "application/json"}
    if kind == 6:  # ending: a malformed or unknown room, or a real one at an impossible time
        room = rng.choice(["live:²", "live:-1", "photo:4", "live:99999999999999999999", "live:424242", "x"])
        if rng.random() < 0.4:
            return "POST", f"/rooms/live:1003/end?at={_q(rng.choice(BAD_TIMES))}", None, auth
        return "POST", f"/rooms/{_q(room)}/end", None, auth
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
    path = rng.choice(["/", "/docs", "/redoc", "/admin", "/rooms", "/rooms/start/x", "/retrieve", "/.env",
                       "/retrieve/user", "/health/x", "/static/x", f"/{_q('../../etc/passwd')}"])
    if method == "GET" and path == "/":
        path = "/nothing"
    return method, path, None, {}


@pytest.mark.slow
def test_fuzzed_invalid_requests_get_4xx_json_and_write_nothing(world, settings):
    before = written_state(world, settings)  # with the Milvus Lite file free, before the server holds it
    port = free_port()
    proc = w.start_service(world, port)
    rng = random.Random(SEED)
    seen: dict[int, int] = {}
    deadline = time.monotonic() + SECONDS
    sent = 0
    try:
        while sent < REQUESTS and time.monotonic() < deadline:
            method, path, body, headers = _request(rng)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read()
            conn.close()
            sent += 1
            seen[resp.status] = seen.get(resp.status, 0) + 1
            assert 400 <= resp.status < 500, (method, path, body and body[:200], resp.status, text[:300])
            parsed = json.loads(text)
            assert set(parsed) == {"error", "message"}, (method, path, parsed)
            assert "Traceback" not in parsed["message"] and "/tmp" not in parsed["message"], parsed
    finally:
        stop(proc)
    assert sent >= 100, f"only {sent} requests in {SECONDS} s"
    assert written_state(world, settings) == before, seen
    assert {401, 404, 422} <= set(seen), seen
    print(f"fuzz: {sent} requests, statuses {dict(sorted(seen.items()))}")
