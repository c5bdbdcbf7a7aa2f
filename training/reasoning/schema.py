"""What the teacher must write, and the one validator every backend's raw text goes through.

Per item: `vertical_domain`, `key_subject`, `content_theme`. Per pair: `match`, a brief `reason`
and `semantic_transferability` in [0, 1]. A teacher answers one JSON object per pair:

    {"photo": {"vertical_domain": ..., "key_subject": ..., "content_theme": ...},
     "live":  {"vertical_domain": ..., "key_subject": ..., "content_theme": ...},
     "match": true, "reason": "...", "semantic_transferability": 0.8}

Anything else is invalid: it is retried, then recorded as rejected with its raw text, never guessed.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, ValidationError

ITEM_FIELDS = ("vertical_domain", "key_subject", "content_theme")
PAIR_FIELDS = ("match", "reason", "semantic_transferability")

Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]


class SchemaError(ValueError):
    """The teacher's raw text is not one valid answer; the message says what is wrong."""


class ItemKnowledge(BaseModel):
    """What the teacher says about one item."""

    model_config = ConfigDict(extra="forbid")
    vertical_domain: Short
    key_subject: Short
    content_theme: Short


class PairKnowledge(BaseModel):
    """What the teacher says about one (short video, live) behaviour pair."""

    model_config = ConfigDict(extra="forbid")
    photo: ItemKnowledge
    live: ItemKnowledge
    match: StrictBool
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=400)]
    semantic_transferability: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _first_json_object(text: str) -> str:
    """The first balanced {...} in `text` (models often wrap JSON in prose or code fences)."""
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start = text.find("{")
    if start < 0:
        raise SchemaError("no JSON object in the answer")
    depth, in_str, escape = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    raise SchemaError("unterminated JSON object in the answer")


def parse_pair_answer(raw: str) -> PairKnowledge:
    """Validate a teacher's raw answer; raise SchemaError saying what is wrong."""
    if raw is None or not raw.strip():
        raise SchemaError("empty answer")
    try:
        data = json.loads(_first_json_object(raw))
    except json.JSONDecodeError as err:
        raise SchemaError(f"not valid JSON: {err.msg} at position {err.pos}") from err
    try:
        return PairKnowledge.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in err.errors())
        raise SchemaError(f"schema violation: {problems}") from err


def knowledge_text(item: ItemKnowledge | dict) -> str:
    """The per-item knowledge as the student learns to write it: one `field: value` line per field."""
    values = item.model_dump() if isinstance(item, ItemKnowledge) else item
    return "\n".join(f"{field}: {values[field]}" for field in ITEM_FIELDS)


def parse_knowledge_text(text: str) -> dict[str, str]:
    """Read back `field: value` lines (the student's generation); missing fields are absent."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in ITEM_FIELDS and name.strip() not in out:
            out[name.strip()] = value.strip()
    return out
