"""Versioned prompt templates for the teacher.

A template is never edited in place: a change gets a new version, because the version is part of
the cache key and of every reasoning row (`prompt_version`), so answers from different prompts
are never mixed silently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from rgcd.training.reasoning.schema import REASON_MAX_CHARS, SHORT_MAX_CHARS

PROMPT_VERSION = "pair-v2"


@dataclass(frozen=True)
class ItemFacts:
    """What the teacher is told about one item: its text, categories and creator."""

    item_id: str
    domain: str
    title: str
    body_text: str
    categories: tuple[str, ...]
    author_id: int
    creator_photos: int = 0
    creator_lives: int = 0
    creator_top_category: str = ""
    cover_path: str | None = None


@dataclass(frozen=True)
class PairFacts:
    """The behaviour evidence behind one pair (shown to the teacher as context, not as the answer)."""

    pair_id: str
    pair_type: str
    photo_item_id: str
    target_id: str
    co_count: int
    distinct_users: int
    strength: float
    event_timestamp: datetime  # the pair's last co-engagement: reasoning about it is valid from then
    photo: ItemFacts = field(repr=False)
    live: ItemFacts = field(repr=False)


_SYSTEM = {
    "pair-v1": (
        "You analyse pairs of items from a short-video and live-streaming platform. The same users "
        "engaged with both items of a pair. Describe each item and judge whether the interest behind "
        "the short video carries over to the live stream.\n"
        "Answer with ONE JSON object and nothing else, exactly these keys:\n"
        '{"photo": {"vertical_domain": str, "key_subject": str, "content_theme": str}, '
        '"live": {"vertical_domain": str, "key_subject": str, "content_theme": str}, '
        '"match": true|false, "reason": str (one sentence), "semantic_transferability": number in [0, 1]}\n'
        "vertical_domain: the broad vertical (e.g. food, gaming); key_subject: the main subject; "
        "content_theme: what the content is about in a few words."
    ),
}

# pair-v2: the answer's length bounds are stated (the grammar and the validator hold answers to them).
_SYSTEM["pair-v2"] = (
    _SYSTEM["pair-v1"]
    + f" Each of these three: at most {SHORT_MAX_CHARS} characters; reason: one sentence, at most "
    f"{REASON_MAX_CHARS} characters."
)

_ITEM_BLOCK = {
    "pair-v1": (
        "[{label}] id={item_id}\n"
        "title: {title}\n"
        "text: {body_text}\n"
        "categories: {categories}\n"
        "creator: author {author_id}, {creator_photos} short videos, {creator_lives} live rooms, "
        "mostly {creator_top_category}{cover}"
    ),
}
_ITEM_BLOCK["pair-v2"] = _ITEM_BLOCK["pair-v1"]

_USER = {
    "pair-v1": (
        "{photo_block}\n\n{live_block}\n\n"
        "Behaviour: {distinct_users} users engaged both "
        "({co_count} co-engagements, strength {strength:.2f}).\n"
        "Return the JSON object."
    ),
}
_USER["pair-v2"] = _USER["pair-v1"]


def _item_block(version: str, label: str, item: ItemFacts) -> str:
    text = item.body_text.strip() or "(none)"
    return _ITEM_BLOCK[version].format(
        label=label,
        item_id=item.item_id,
        title=item.title.strip() or "(untitled)",
        body_text=text[:600],
        categories=" > ".join(c for c in item.categories if c) or "(none)",
        author_id=item.author_id,
        creator_photos=item.creator_photos,
        creator_lives=item.creator_lives,
        creator_top_category=item.creator_top_category or "unknown",
        # Only where the item has a cover: backends that see images attach the file.
        cover=f"\ncover image: {item.cover_path}" if item.cover_path else "",
    )


def pair_messages(pair: PairFacts, version: str = PROMPT_VERSION) -> list[dict]:
    """The chat messages for one pair under prompt `version` (OpenAI chat format).

    Where an item has a cover image, the user message lists its path; backends whose model sees
    images attach the files with `with_covers`.
    """
    if version not in _SYSTEM:
        raise KeyError(f"unknown prompt version {version!r}; known: {sorted(_SYSTEM)}")
    user = _USER[version].format(
        photo_block=_item_block(version, "short video", pair.photo),
        live_block=_item_block(version, "live stream", pair.live),
        distinct_users=pair.distinct_users,
        co_count=pair.co_count,
        strength=pair.strength,
    )
    return [{"role": "system", "content": _SYSTEM[version]}, {"role": "user", "content": user}]


def covers(pair: PairFacts) -> list[tuple[str, str]]:
    """(label, path) of the pair's cover images, short video first; empty where neither has one."""
    return [
        (label, item.cover_path)
        for label, item in (("short video", pair.photo), ("live stream", pair.live))
        if item.cover_path
    ]


def with_covers(messages: list[dict], pair: PairFacts) -> list[dict]:
    """`messages` with the pair's covers attached to the first user message as image parts.

    The user content becomes a list of parts: its text, then per cover a label and
    `{"type": "image", "path": ...}`; each backend turns an image part into what its model takes
    (a data URL for OpenAI-compatible servers, a PIL image for a local processor).
    """
    found = covers(pair)
    if not found:
        return messages
    out, attached = [], False
    for message in messages:
        if message["role"] == "user" and not attached and isinstance(message["content"], str):
            parts: list[dict] = [{"type": "text", "text": message["content"]}]
            for label, path in found:
                parts += [{"type": "text", "text": f"Cover of the {label}:"}, {"type": "image", "path": path}]
            message, attached = {"role": "user", "content": parts}, True
        out.append(message)
    return out


def content_hash(pair: PairFacts) -> str:
    """A hash of everything about the pair the teacher sees (both items' facts and the evidence)."""
    payload = {
        "pair_type": pair.pair_type,
        "target_id": pair.target_id,
        "photo": asdict(pair.photo),
        "live": asdict(pair.live),
        "co_count": pair.co_count,
        "distinct_users": pair.distinct_users,
        "strength": round(pair.strength, 6),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
