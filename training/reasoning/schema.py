"""What the teacher must write, and the one validator every backend's raw text goes through.

Per item: `vertical_domain`, `key_subject`, `content_theme`. Per pair: `match`, a brief `reason`
and `semantic_transferability` in [0, 1]. A teacher answers one JSON object per pair:

    {"photo": {"vertical_domain": ..., "key_subject": ..., "content_theme": ...},
     "live":  {"vertical_domain": ..., "key_subject": ..., "content_theme": ...},
     "match": true, "reason": "...", "semantic_transferability": 0.8}

Anything else is invalid: it is retried, then recorded as rejected with its raw text, never guessed.

`answer_json_schema()` is the same schema as JSON Schema, for decoding that cannot leave it (a grammar
in the `hf` backend, `response_format` on OpenAI-compatible servers). Every string and the number are
bounded, so a model that loops ends within a known length instead of at the token limit.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import re
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, ValidationError

from rgcd.atomic import write_text_atomic

ITEM_FIELDS = ("vertical_domain", "key_subject", "content_theme")
PAIR_FIELDS = ("match", "reason", "semantic_transferability")

SHORT_MAX_CHARS = 48  # vertical_domain, key_subject, content_theme: "a few words"
REASON_MAX_CHARS = 240  # reason: one sentence
SCORE_DECIMALS = 6  # the grammar's bound on semantic_transferability's digits

Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=SHORT_MAX_CHARS)]


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
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=REASON_MAX_CHARS)
    ]
    semantic_transferability: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


# Characters a grammar-written string may hold: no quote, backslash or control character (so the raw
# JSON text is the value itself, no escapes), and no whitespace at either end (the validator strips it,
# so a blank string would pass the grammar and fail the validator).
_EDGE = r'[^\s"\\\x00-\x1f\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]'
_INNER = r'[^"\\\x00-\x1f\x7f]'


_MAX_REPEAT = 100  # xgrammar 0.2.8 fails to compile a {0,n} repeat past ~128 with a tokenizer: chunk it


def _bounded_text_pattern(max_chars: int) -> str:
    """1 to `max_chars` characters, no edge whitespace; the inner repeat split into chunks."""
    inner, left = "", max_chars - 2
    while left > 0:
        inner += f"{_INNER}{{0,{min(left, _MAX_REPEAT)}}}"
        left -= _MAX_REPEAT
    return f"^{_EDGE}({inner}{_EDGE})?$"


def _inline_refs(node, defs: dict):
    """The schema with every `$ref` replaced by its definition (not every server resolves refs)."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline_refs(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {
            k: _inline_refs(v, defs)
            for k, v in node.items()
            if k != "$defs" and not (k == "title" and isinstance(v, str))  # a title, not a property
        }
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def _tighten_strings(node) -> None:
    """Give every bounded string the pattern above, which holds its length bounds too.

    minLength/maxLength go: xgrammar ignores them beside a pattern (and says so on every compile).
    """
    if isinstance(node, dict):
        if node.get("type") == "string" and "maxLength" in node:
            node["pattern"] = _bounded_text_pattern(node.pop("maxLength"))
            node.pop("minLength", None)
        for value in node.values():
            _tighten_strings(value)


@cache
def _answer_json_schema() -> dict:
    schema = PairKnowledge.model_json_schema()
    schema = _inline_refs(schema, schema.get("$defs", {}))
    _tighten_strings(schema)
    return schema


def answer_json_schema() -> dict:
    """The answer schema as JSON Schema, for constrained decoding (a grammar, `response_format`).

    Derived from `PairKnowledge` and a little stricter than it: strings carry a pattern that keeps
    quotes, backslashes, control characters and edge whitespace out, so whatever decoding within
    this schema writes also passes `parse_pair_answer`. What it cannot say (that `match` agrees with
    the reason, say) is left to the validator and the retries.
    """
    return copy.deepcopy(_answer_json_schema())


def longest_answer() -> str:
    """The longest answer the grammar allows, as the grammar writes it (compact, one line).

    Its length in characters bounds the tokens of a constrained answer that loops one character a
    token (as SmolLM2 does: "1.1.1.1..."), so a token limit at least this long never cuts an answer
    the grammar would have ended (non-ASCII characters can take more than one token each).
    """
    item = {field: "x" * SHORT_MAX_CHARS for field in ITEM_FIELDS}
    return json.dumps({"photo": item, "live": item, "match": False, "reason": "x" * REASON_MAX_CHARS,
                       "semantic_transferability": float(f"0.{'1' * SCORE_DECIMALS}")})


GRAMMAR_OPTIONS = "any_whitespace=False"  # part of the grammar cache's key: a change compiles anew


def compile_answer_grammar(tokenizer, vocab_size: int, cache: Path | None = None):
    """The answer schema compiled (xgrammar) for one tokenizer: the `hf` backend's decoding grammar.

    `vocab_size` is the model's logits width (it can exceed the tokenizer's). Free whitespace is
    off: with it on, small models fill the token limit with newlines (measured with SmolLM2-135M and
    xgrammar 0.2.8).
    Compiling walks the whole vocabulary through every state of the bounded-string patterns (about
    a minute for a 49k vocabulary); with `cache` (a folder) the result is kept there, keyed by
    the schema, the tokenizer and xgrammar's version, and later runs read it back in under a second.
    """
    import xgrammar

    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    schema = json.dumps(answer_json_schema())  # key order kept: it is the order the answer is written in
    if cache is None:
        return _compile(xgrammar, info, schema)
    version = importlib.metadata.version("xgrammar")
    key = hashlib.sha256("\n".join([schema, GRAMMAR_OPTIONS, version, info.serialize_json()]).encode())
    stored = cache / f"answer-{key.hexdigest()[:24]}.json"
    if stored.is_file():
        try:
            return xgrammar.CompiledGrammar.deserialize_json(stored.read_text(), info)
        except (xgrammar.DeserializeFormatError, xgrammar.DeserializeVersionError):
            pass  # written by another xgrammar build: compile again and replace it
    grammar = _compile(xgrammar, info, schema)
    write_text_atomic(grammar.serialize_json(), stored)
    return grammar


def _compile(xgrammar, info, schema: str):
    return xgrammar.GrammarCompiler(info).compile_json_schema(schema, any_whitespace=False)


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
