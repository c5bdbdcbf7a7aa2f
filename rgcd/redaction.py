"""Secrets out of what is stored, printed or answered: API keys, bearer tokens, this machine's paths.

A server's error body may echo the request's `Authorization` header (some proxies and toy servers
do), and such a body ends up in a quarantine table, a cache or a message. `redact` replaces the
secrets it is given, and anything shaped like a bearer token or an OpenAI-style key, with
`[REDACTED]`. `public_message` makes an error message fit for an HTTP client of either server
(`rgcd serve`, `rgcd features serve`): no filesystem path, no URI, no token.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rgcd.config import Settings, Workspace

REDACTED = "[REDACTED]"
# what a server answers for an error that is not the client's: the details go to its log only
UNEXPECTED = "an unexpected error; the server's log has the details"

# `Bearer <token>` (any scheme-cased spelling), OpenAI-style keys (sk-..., sk-proj-...), and
# `api_key=...` / `"api_key": "..."` pairs.
_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{4,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"),
)


def redact(text: str | None, *secrets: str | None) -> str | None:
    """`text` with each non-trivial secret in `secrets` and every token-shaped string replaced."""
    if not text:
        return text
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _PATTERNS[1].sub(REDACTED, text)
    return _PATTERNS[2].sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def public_message(message: str, ws: Workspace, settings: Settings) -> str:
    """An error message as a client may see it: no path of this machine's filesystem, no URI (a Milvus
    URI can carry credentials), no token; at most 1,000 characters."""
    r = settings.retrieval
    uri = r.milvus_uri or str(ws.milvus / "rooms.db")  # the Lite file by default (milvus_store.milvus_uri)
    for secret, shown in ((r.milvus_token, "<token>"), (uri, "<retrieval.milvus_uri>")):
        if secret:
            message = message.replace(secret, shown)
    for root, shown in ((ws.root, "<workspace>"), (_CHECKOUT, "<rgcd>"), (Path(sys.prefix), "<python>"),
                        (Path.home(), "<home>")):
        if len(root.parts) > 1:  # a home of "/" would turn every slash into <home>
            message = message.replace(str(root), shown)
    message = _PATH.sub("<path>", _URI.sub("<uri>", message))
    return message if len(message) <= 1000 else message[:1000] + "..."


_CHECKOUT = Path(__file__).resolve().parents[1]
_URI = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
# what is left of absolute paths after the roots above (a route such as /rooms/start stays)
_PATH = re.compile(r"/(?:etc|home|root|tmp|var|usr|opt|srv|mnt|media|proc|sys|dev|run|data|work|private)"
                   r"(?:/[^\s'\",;)]*)?")
