"""Who may write through the HTTP servers the platform starts, and how much a request may send.

`rgcd serve` and `rgcd features serve` answer reads to whoever reaches them (they bind 127.0.0.1
by default) and writes only to a request that bears the configured token: `Authorization: Bearer
<token>`, compared in constant time. The token is read from the environment variable that
`serving.write_token_env` names, else from the workspace file `serving.write_token_file`; never
from rgcd.yaml itself. With no token, write routes answer 403: writes are off. docs/security.md
says what is open and how to put the servers behind a proxy.

The guard is plain ASGI middleware in front of the app, so a refused request is answered before
its body is read or parsed, whatever the app behind it is (FastAPI of our own, or Feast's).
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from rgcd.config import Settings, Workspace
from rgcd.errors import RgcdError

MIN_TOKEN_CHARS = 16
NEW_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class AccessError(RgcdError):
    """The write token is configured wrongly; the message says how to set it."""

    exit_code = 2


def write_token(ws: Workspace, settings: Settings) -> str | None:
    """The token write routes require, or None when none is configured (writes are off)."""
    s = settings.serving
    token = os.environ.get(s.write_token_env, "") if s.write_token_env else ""
    where = f"${s.write_token_env}"
    if not token.strip() and s.write_token_file:
        path = ws.root / s.write_token_file
        if not path.is_file():
            raise AccessError(f"serving.write_token_file names {s.write_token_file}, which is not a file in "
                              f"the workspace: write a token there ({NEW_TOKEN} > FILE; chmod 600 FILE) or "
                              "clear the setting")
        token, where = path.read_text(errors="replace"), f"serving.write_token_file ({s.write_token_file})"
    token = token.strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS or not token.isascii() or any(c.isspace() for c in token):
        raise AccessError(f"the write token in {where} must be at least {MIN_TOKEN_CHARS} printable ASCII "
                          f"characters without spaces: make one with {NEW_TOKEN}")
    return token


def error_json(kind: str, message: str) -> bytes:
    """The one error body of every server here: {"error", "message"}."""
    return json.dumps({"error": kind, "message": message}).encode()


async def _respond(send: Callable, status: int, kind: str, message: str,
                   headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = error_json(kind, message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


class WriteGuard:
    """ASGI middleware: a request to a write route needs the bearer token; others pass untouched.

    `is_write(method, path)` says which requests write (for a websocket, method is "WEBSOCKET").
    """

    def __init__(self, app: Any, token: str | None, is_write: Callable[[str, str], bool],
                 token_env: str) -> None:
        self.app, self.is_write, self.token_env = app, is_write, token_env
        self.token = token.encode() if token else None

    def refusal(self, scope: dict) -> tuple[int, str, str] | None:
        """(status, kind, message) for a write request without the right token; None lets it through."""
        if self.token is None:
            return (403, "WritesDisabled", "writes are off on this server: set a write token (the variable "
                    f"${self.token_env}, or serving.write_token_file) and restart it; see docs/security.md")
        given = _header(scope, b"authorization") or b""
        scheme, _, value = given.partition(b" ")
        if scheme.lower() != b"bearer" or not value.strip():
            return (401, "Unauthorized", "this route writes: send the header 'Authorization: Bearer <token>' "
                    "with the server's write token")
        if not hmac.compare_digest(value.strip(), self.token):
            return (401, "Unauthorized", "the bearer token is not this server's write token")
        return None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        kind = scope["type"]
        if kind in ("http", "websocket"):
            method = scope.get("method", "GET") if kind == "http" else "WEBSOCKET"
            if self.is_write(method, scope.get("path", "")):
                refused = self.refusal(scope)
                if refused is not None:
                    if kind == "websocket":
                        await receive()  # the connect message, then refuse the handshake
                        await send({"type": "websocket.close", "code": 1008})
                        return
                    status, err, message = refused
                    extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
                    await _respond(send, status, err, message, extra)
                    return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: a request body larger than `max_bytes` is refused (413) before it is read.

    A body must say its length (Content-Length): a chunked upload of unknown size is refused (411).
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            length = _header(scope, b"content-length")
            chunked = b"chunked" in (_header(scope, b"transfer-encoding") or b"").lower()
            if length is None and chunked:
                await _respond(send, 411, "LengthRequired", "send the body with a Content-Length header")
                return
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                await _respond(send, 413, "BodyTooLarge", f"request bodies are limited to {self.max_bytes:,} "
                               "bytes (serving.max_body_kib); send fewer rooms per request")
                return
        await self.app(scope, receive, send)
