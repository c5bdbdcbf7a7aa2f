"""Constrained decoding in the `hf` backend: a tiny causal LM with RANDOM weights (built from config,
tokenizer trained offline) answers every pair within the schema once the grammar holds it, and not
without it. The model knows nothing, so what the test proves is the grammar, not the model.
"""

import json
import sqlite3
import time

import polars as pl
import pytest

from rgcd.config import Settings
from rgcd.training.frames import read_stage1_frames
from rgcd.training.reasoning.backends import HFTeacher, TeacherRequest
from rgcd.training.reasoning.prompts import pair_messages
from rgcd.training.reasoning.run import answer_pairs, reason, select_pairs
from rgcd.training.reasoning.schema import (
    REASON_MAX_CHARS,
    SHORT_MAX_CHARS,
    SchemaError,
    answer_json_schema,
    longest_answer,
    parse_pair_answer,
)
from rgcd.training.tiny_base import build_tiny_causal_lm

PAIRS = 4


def _teacher_cfg(model, **kw):
    return Settings().teacher.model_copy(
        update={"backend": "hf", "model": str(model), "concurrency": PAIRS, "retries": 0,
                "max_new_tokens": 700, **kw}
    )


@pytest.fixture
def random_lm(world_ws, tmp_path):
    pairs, _ = select_pairs(read_stage1_frames(world_ws, Settings()), PAIRS, 0.0)
    corpus = [m["content"] for p in pairs for m in pair_messages(p)]
    model = build_tiny_causal_lm(corpus * 4, tmp_path / "random-lm", vocab_size=1200, max_positions=2048)
    return model, pairs


def test_the_grammar_not_the_model_makes_every_answer_valid(world_ws, random_lm):
    model, pairs = random_lm
    requests = [TeacherRequest(p, pair_messages(p)) for p in pairs]
    free = HFTeacher(_teacher_cfg(model, structured_output=False, max_new_tokens=120))
    assert free.grammar is None and free.teacher_id.endswith("(no grammar)")
    unconstrained = answer_pairs(free, requests, retries=0)
    assert [a.status for a in unconstrained] == ["rejected"] * PAIRS  # random weights write no JSON

    t0 = time.perf_counter()
    settings = Settings().model_copy(update={"teacher": _teacher_cfg(model, max_pairs=PAIRS)})
    report = reason(world_ws, settings, show_progress=False)
    print(f"constrained: {PAIRS} pairs in {time.perf_counter() - t0:.1f} s (shared machine)")
    assert (report.accepted, report.rejected, report.schema_valid_rate) == (PAIRS, 0, 1.0)
    assert report.teacher_id == "hf:random-lm"
    rows = pl.read_parquet(world_ws.feature_data / "pair_reasoning.parquet")
    assert rows.height == PAIRS and rows["semantic_transferability"].is_between(0, 1).all()
    # free whitespace is off: the answers are one line each
    cache = sqlite3.connect(world_ws.models / "teacher" / "answers.sqlite")
    raws = [r[0] for r in cache.execute("SELECT raw_text FROM answers WHERE teacher_id = 'hf:random-lm'")]
    assert len(raws) == PAIRS and all("\n" not in r and r == r.strip() for r in raws)


def test_bounded_schema_stops_a_looping_model_early():
    # Every string and the score are bounded, so the longest answer the grammar allows is known.
    schema = answer_json_schema()
    assert "$ref" not in json.dumps(schema) and schema["additionalProperties"] is False
    import xgrammar
    from xgrammar.testing import _is_grammar_accept_string

    grammar = xgrammar.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
    item = {"vertical_domain": "Food", "key_subject": "noodles", "content_theme": "street food"}
    good = {"photo": item, "live": item, "match": True, "reason": "same vertical",
            "semantic_transferability": 0.75}
    assert _is_grammar_accept_string(grammar, json.dumps(good))
    longest = dict(good, reason="x" * REASON_MAX_CHARS, live=dict(item, key_subject="y" * SHORT_MAX_CHARS))
    assert _is_grammar_accept_string(grammar, json.dumps(longest))
    for bad in (
        dict(good, reason="x" * (REASON_MAX_CHARS + 1)),  # too long
        dict(good, live=dict(item, key_subject="y" * (SHORT_MAX_CHARS + 1))),
        dict(good, reason=""),
        dict(good, reason=" padded"),  # edge whitespace: the validator would strip it to a blank
        dict(good, semantic_transferability=0.1234567),  # more digits than a looping model may write
        dict(good, semantic_transferability=1.5),
    ):
        assert not _is_grammar_accept_string(grammar, json.dumps(bad)), bad
    assert not _is_grammar_accept_string(grammar, json.dumps(good, indent=1))  # free whitespace is off
    with pytest.raises(SchemaError):  # the validator holds the same bound
        parse_pair_answer(json.dumps(dict(good, reason="x" * (REASON_MAX_CHARS + 1))))


def test_the_token_limit_never_cuts_what_the_grammar_would_end(world_ws, random_lm):
    """A model looping one character a token through every string needs len(longest_answer())
    tokens; under the grammar the hf backend allows at least that, whatever max_new_tokens says."""
    import xgrammar
    from xgrammar.testing import _is_grammar_accept_string

    grammar = xgrammar.Grammar.from_json_schema(json.dumps(answer_json_schema()), any_whitespace=False)
    longest = longest_answer()
    assert _is_grammar_accept_string(grammar, longest) and parse_pair_answer(longest)
    assert not _is_grammar_accept_string(grammar, longest.replace('"x', '"xx', 1))  # nothing longer
    model, _ = random_lm
    constrained = HFTeacher(_teacher_cfg(model, max_new_tokens=64))
    free = HFTeacher(_teacher_cfg(model, max_new_tokens=64, structured_output=False))
    assert constrained.token_limit == len(longest) > 600 and free.token_limit == 64
