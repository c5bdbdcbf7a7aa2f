"""Issue 25, high: `rgcd features serve` runs Feast's feature server without its write routes (/push,
/write-to-online-store, /materialize, /materialize-incremental) and chat, unless asked for; asked
for, they need the write token. Reads (/get-online-features) stay open.

Before: all of them were served to whoever reached the port; a /write-to-online-store call replaced a
user's vector, and a /push with model_version "evil" made I2I answer 409 for that video."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from rgcd.cli import cli
from rgcd.featurestore.store import (
    FEAST_CHAT_ROUTES,
    FEAST_WRITE_ROUTES,
    restrict_feast_app,
    write_runtime_yaml,
)

TOKEN = "s3cret-token-for-tests-only"
EVIL = {"push_source_name": "item_embeddings_push", "to": "online",
        "df": {"item_id": ["photo:4"], "transferable": [[1.0] * 8], "residual": [[1.0] * 4],
               "retrieval": [[1.0] * 8], "model_version": ["evil"],
               "event_timestamp": ["2025-05-10T00:00:00"], "created_timestamp": ["2030-01-01T00:00:00"]}}
READ = {"features": ["item_embeddings:model_version"], "entities": {"item_id": ["photo:4"]}}


def _feast_app(ws, settings, token, **expose):
    from feast.feature_server import get_app

    from rgcd.featurestore.online import RegistryWatchingStore

    write_runtime_yaml(ws, settings)
    store = RegistryWatchingStore(repo_path=str(ws.feast))
    return restrict_feast_app(get_app(store, registry_ttl_sec=0), token, ws, settings, **expose)


def _version(client) -> str:
    got = client.post("/get-online-features", json=READ)
    assert got.status_code == 200, got.text
    return got.json()["results"][1]["values"][0]


def test_by_default_feasts_write_and_chat_routes_are_not_served(world, settings):
    with TestClient(_feast_app(world, settings, TOKEN), raise_server_exceptions=False) as client:
        paths = set(client.get("/openapi.json").json()["paths"])
        assert "/get-online-features" in paths
        assert not paths & set(FEAST_WRITE_ROUTES + FEAST_CHAT_ROUTES), paths
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for route in FEAST_WRITE_ROUTES:  # not there, even with the token
            assert client.post(route, json=EVIL, headers=auth).status_code == 404
            assert client.post(route, json=EVIL).status_code == 404
        assert client.get("/chat").status_code == 404
        assert client.get("/docs").status_code == 404  # no page loading Swagger from a CDN
        assert _version(client) == "v1"


def test_exposed_write_routes_need_the_token(world, settings):
    with TestClient(_feast_app(world, settings, TOKEN, expose_writes=True),
                    raise_server_exceptions=False) as client:
        for headers in ({}, {"Authorization": "Bearer not-the-token-at-all"}):
            for route in FEAST_WRITE_ROUTES:
                got = client.post(route, json=EVIL, headers=headers)
                assert got.status_code == 401 and set(got.json()) == {"error", "message"}
        assert _version(client) == "v1"  # nothing was pushed
        assert "/push" in client.get("/openapi.json").json()["paths"]


def test_exposed_write_routes_work_with_the_token(world, settings):
    """Asked for and authorised, a push is Feast's own: the routes are guarded, not broken."""
    push = {**EVIL, "df": {**EVIL["df"], "item_id": ["photo:59"]}}
    read = {**READ, "entities": {"item_id": ["photo:59"]}}
    with TestClient(_feast_app(world, settings, TOKEN, expose_writes=True),
                    raise_server_exceptions=False) as client:
        got = client.post("/push", json=push, headers={"Authorization": f"Bearer {TOKEN}"})
        assert got.status_code == 200, got.text
        assert client.post("/get-online-features", json=read).json()["results"][1]["values"][0] == "evil"


def test_exposing_writes_without_a_token_is_refused_in_one_line(world, monkeypatch):
    monkeypatch.delenv("RGCD_WRITE_TOKEN", raising=False)
    out = CliRunner().invoke(cli, ["-w", str(world.root), "features", "serve", "--expose-writes"])
    assert out.exit_code == 2 and "needs a write token" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("flag", ["--expose-writes", "--expose-chat"])
def test_the_flags_are_documented(flag):
    out = CliRunner().invoke(cli, ["features", "serve", "--help"])
    assert flag in out.output and "write token" in out.output


BAD_READS = [
    {"features": ["no_such_view:x"], "entities": {"item_id": ["photo:4"]}},
    {"features": ["item_embeddings:no_such_feature"], "entities": {"item_id": ["photo:4"]}},
    {"features": ["item_embeddings:model_version"], "entities": {"no_such_key": ["photo:4"]}},
    {"features": ["item_embeddings:model_version"], "entities": {"item_id": [[1, 2]]}},
    {"features": "item_embeddings:model_version", "entities": {"item_id": "photo:4"}},
    {"features": ["not a reference"], "entities": {"item_id": ["photo:4"]}},
    {"feature_service": "no_such_service", "entities": {"item_id": ["photo:4"]}},
]


@pytest.mark.parametrize("body", BAD_READS)
def test_a_bad_read_gets_a_client_error_in_one_shape_without_internals(world, settings, body):
    """Feast's own handler answered any non-Feast exception with 500 and `str(exc)` as the body."""
    with TestClient(_feast_app(world, settings, TOKEN), raise_server_exceptions=False) as client:
        got = client.post("/get-online-features", json=body)
        assert 400 <= got.status_code < 500, got.text
        assert set(got.json()) == {"error", "message"}, got.text
        assert str(world.root) not in got.text and "Traceback" not in got.text
