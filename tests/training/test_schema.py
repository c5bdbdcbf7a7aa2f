import json

import pytest

from rgcd.training.reasoning.schema import (
    ITEM_FIELDS,
    SchemaError,
    knowledge_text,
    parse_knowledge_text,
    parse_pair_answer,
)

ITEM = {"vertical_domain": "Food", "key_subject": "noodles", "content_theme": "street food tour"}
GOOD = {
    "photo": ITEM,
    "live": ITEM,
    "match": True,
    "reason": "same food vertical",
    "semantic_transferability": 0.8,
}


def test_valid_answer_parses_also_inside_prose_and_fences():
    assert parse_pair_answer(json.dumps(GOOD)).semantic_transferability == 0.8
    wrapped = f"Sure! Here it is:\n```json\n{json.dumps(GOOD)}\n```\nHope that helps."
    assert parse_pair_answer(wrapped).photo.vertical_domain == "Food"
    braces = dict(GOOD, reason='uses {braces} and "quotes" inside')
    assert parse_pair_answer("x " + json.dumps(braces)).reason.startswith("uses {braces}")


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ("", "empty"),
        ("no json here", "no JSON object"),
        ('{"photo": ', "unterminated"),
        (json.dumps(dict(GOOD, semantic_transferability=1.5)), "semantic_transferability"),
        (json.dumps(dict(GOOD, semantic_transferability=-0.1)), "semantic_transferability"),
        (json.dumps(dict(GOOD, match="yes")), "match"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "reason"}), "reason"),
        (json.dumps(dict(GOOD, photo={**ITEM, "key_subject": "  "})), "photo.key_subject"),
        (json.dumps(dict(GOOD, extra=1)), "extra"),
    ],
)
def test_invalid_answers_are_refused_with_what_is_wrong(answer, says):
    with pytest.raises(SchemaError, match=says):
        parse_pair_answer(answer)


def test_knowledge_text_round_trip():
    text = knowledge_text(ITEM)
    assert text.splitlines()[0] == "vertical_domain: Food"
    assert parse_knowledge_text(text) == ITEM
    assert parse_knowledge_text("vertical_domain: Food\ngarbage\n") == {"vertical_domain": "Food"}
    assert set(parse_knowledge_text(text)) == set(ITEM_FIELDS)
