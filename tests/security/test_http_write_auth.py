"""Issue 25, high: `rgcd serve`'s write routes (POST /rooms/start, POST /rooms/{id}/end) answer only a
request bearing the configured token; with no token configured they are off; reads stay open.

Before: one unauthenticated POST /rooms/start with a vector 1000x a unit vector made its room the top
candidate for 29 of 30 users, and anyone could end any room."""

from __future__ import annotations

import pytest
import serving_world as w
from fastapi.testclient import TestClient
from hostile import ATTACKER_ROOM, written_state

from rgcd.access import AccessError, write_token
from rgcd.embeddings.service import create_app

TOKEN = "s3cret-token-for-tests-only"


def _hostile_room(scale: float = 1000.0) -> dict:
    vector = [x * scale for x in w.topic_vector(1)]  # 1000x a unit vector: top for every user
    return {"live_id": ATTACKER_ROOM, "author_id": 501, "transferable": vector,
            "residual": [1.0, 0.0, 0.0, 0.0], "retrieval": vector, "model_version": "v1"}


def _client(ws, settings, token):
    return TestClient(create_app(ws, settings, token), raise_server_exceptions=False)


def test_without_a_token_configured_writes_are_off_and_reads_stay_open(world, settings):
    before = written_state(world, settings)
    with _client(world, settings, None) as client:
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
            got = client.post("/rooms/start", json=_hostile_room(), headers=headers)
            assert got.status_code == 403 and got.json()["error"] == "WritesDisabled"
            assert "RGCD_WRITE_TOKEN" in got.json()["message"]
        assert client.post("/rooms/live:1000/end").status_code == 403
        assert client.get(f"/retrieve/user/1?at={w.T0:%Y-%m-%dT%H:%M:%SZ}").status_code == 200
        assert client.get("/health").status_code == 200
    assert written_state(world, settings) == before


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer wrong-token-of-some-length", f"Basic {TOKEN}",
                                    f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"])
def test_a_write_without_the_right_bearer_token_is_refused_before_its_body_is_read(world, settings, header):
    before = written_state(world, settings)
    headers = {"Authorization": header} if header else {}
    with _client(world, settings, TOKEN) as client:
        got = client.post("/rooms/start", json=_hostile_room(), headers=headers)
        assert got.status_code == 401 and got.headers["www-authenticate"] == "Bearer"
        assert set(got.json()) == {"error", "message"} and TOKEN not in got.text
        # not even parsed: a body that is not JSON gets the same answer
        assert client.post("/rooms/start", content=b"\xff{", headers=headers).status_code == 401
        assert client.post("/rooms/live:1000/end", headers=headers).status_code == 401  # anyone ending rooms
    assert written_state(world, settings) == before


def test_with_the_token_a_room_goes_on_air_and_ends(world, settings):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    room = _hostile_room(scale=1.0) | {"live_id": 9_000_002}
    with _client(world, settings, TOKEN) as client:
        got = client.post("/rooms/start", json=room, headers=auth)
        assert got.status_code == 200, got.text
        assert client.post("/rooms/live:9000002/end", headers=auth).json()["ended"] is True


def test_the_huge_vector_is_refused_even_with_the_token(world, settings):
    before = written_state(world, settings)
    with _client(world, settings, TOKEN) as client:
        got = client.post("/rooms/start", json=_hostile_room(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert got.status_code == 422 and "norm" in got.json()["message"]
    assert written_state(world, settings) == before


def test_the_token_comes_from_the_environment_or_a_workspace_file_never_from_the_yaml(world, settings,
                                                                                      monkeypatch):
    monkeypatch.delenv("RGCD_WRITE_TOKEN", raising=False)
    assert write_token(world, settings) is None
    monkeypatch.setenv("RGCD_WRITE_TOKEN", TOKEN)
    assert write_token(world, settings) == TOKEN
    monkeypatch.setenv("RGCD_WRITE_TOKEN", "short")
    with pytest.raises(AccessError, match="at least 16"):
        write_token(world, settings)
    monkeypatch.delenv("RGCD_WRITE_TOKEN")
    (world.root / "secrets").mkdir(exist_ok=True)
    (world.root / "secrets" / "write_token").write_text(TOKEN + "\n")
    from_file = settings.model_copy(update={"serving": settings.serving.model_copy(
        update={"write_token_file": "secrets/write_token"})})
    assert write_token(world, from_file) == TOKEN
    from rgcd.config import ServingConfig

    with pytest.raises(ValueError, match="inside the workspace"):
        ServingConfig(write_token_file="/etc/passwd")
    with pytest.raises(ValueError):
        ServingConfig(write_token="abc")  # no such setting: the token never sits in rgcd.yaml
