"""Secrets out of what is stored or printed: API keys, bearer tokens.

A server's error body may echo the request's `Authorization` header (some proxies and toy servers
do), and such a body ends up in a quarantine table, a cache or a message. `redact` replaces the
secrets it is given, and anything shaped like a bearer token or an OpenAI-style key, with
`[REDACTED]`.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

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
