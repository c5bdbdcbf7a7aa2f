"""A simulated teacher for synthetic worlds only: it answers from the generator's latent knowledge.

It is NOT an LLM. It stands in for the large multimodal teacher (the paper's ~35B MLLM) on the demo
world, so that the method's premise (reasoning carries knowledge that ids and raw vectors lack) can
be measured as a dose-response in its accuracy `p`, never as a result about a real model. Its
teacher id, every answer's `reason` and the reports that carry them say so (`LABEL`).

What it knows, from `<workspace>/latent/` (transforms/latent.py):
- each item's true topic (with probability `p` it names it; otherwise a plausible wrong topic: a
  sibling under the same level 1 most often, a topic that shares the item's ambiguous words, or any);
  the draw is fixed per item and seed, so an item is judged the same way in every pair;
- the knowledge table: an invented entity the item's text names (a game, dish, team, place, person)
  is its `key_subject`, which only world knowledge resolves;
- the short-video -> live transfer matrix, which sets `semantic_transferability`.
A world without `latent/` (real data) is refused.

Answers are JSON text that goes through the same validator, cache and run path as every backend.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import polars as pl

from rgcd.errors import RgcdError
from rgcd.training.reasoning.completion import Completion
from rgcd.training.reasoning.schema import SHORT_MAX_CHARS

LABEL = "simulated teacher (synthetic world only), not an LLM"
_NAME = re.compile(r"[A-Z][a-z]+")


class WorldTeacherError(RgcdError):
    """The `world` teacher was asked to judge a world that has no latent truth."""

    exit_code = 2


def teacher_id(accuracy: float) -> str:
    return f"world p={accuracy:.2f} ({LABEL})"


class WorldTeacher:
    """Answers the teacher's schema from the latent truth with accuracy `accuracy` per item."""

    is_llm = False
    batch_size = 512

    def __init__(self, latent_folder: Path, accuracy: float, seed: int = 0) -> None:
        from rgcd.transforms.latent import read_latent

        truth = read_latent(latent_folder)
        if truth is None:
            raise WorldTeacherError(
                f"teacher.backend 'world' is a simulated teacher for synthetic worlds only, and "
                f"{latent_folder} has no latent truth (real data has none): use metadata, openai or hf")
        if not 0.0 <= accuracy <= 1.0:
            raise WorldTeacherError(f"teacher.world_accuracy must be in [0, 1] (got {accuracy})")
        from rgcd.transforms.demo import AMBIGUOUS_WORDS, TOPICS

        self.topics = TOPICS
        self.accuracy = accuracy
        self.seed = seed
        self.teacher_id = teacher_id(accuracy)
        items = truth.items.select("item_id", "topic")
        self.item_topic = dict(zip(items["item_id"].to_list(), items["topic"].to_list(), strict=True))
        know = truth.knowledge
        self.entity_topic = dict(zip(know["entity"].to_list(), know["topic"].to_list(), strict=True))
        n = len(TOPICS)
        self.transfer = np.asarray(truth.params.get("transfer", np.eye(n).tolist()), dtype=np.float64)
        confusable = np.zeros((n, n), dtype=bool)
        for shared in AMBIGUOUS_WORDS.values():
            confusable[np.ix_(shared, shared)] = True
        np.fill_diagonal(confusable, False)
        self.confusable = confusable
        self.author_topic: dict[int, int] = {}
        if {"domain", "author_id"} <= set(truth.items.columns):
            top = (truth.items.filter(pl.col("domain") == "live").group_by("author_id", "topic").len()
                   .sort("author_id", "len", "topic", descending=[False, True, False])
                   .group_by("author_id", maintain_order=True).first())
            self.author_topic = dict(zip(top["author_id"].to_list(), top["topic"].to_list(), strict=True))

    # ------------------------------------------------------------------------------------ items
    def _rng(self, item_id: str) -> np.random.Generator:
        return np.random.default_rng([zlib.crc32(item_id.encode()), self.seed])

    def _wrong(self, rng: np.random.Generator, topic: int) -> int:
        """A plausible wrong topic: a sibling (60%), one sharing ambiguous words (20%), any (20%)."""
        n = len(self.topics)
        siblings = [k for k in range(n) if k // 3 == topic // 3 and k != topic]
        confusable = list(np.flatnonzero(self.confusable[topic]))
        r = rng.random()
        pool = siblings if r < 0.6 or not confusable else confusable if r < 0.8 else \
            [k for k in range(n) if k != topic]
        return int(pool[int(rng.integers(0, len(pool)))])

    def said_topic(self, facts) -> tuple[int, bool]:
        """(the topic this teacher names for the item, whether the item is in the latent truth)."""
        rng = self._rng(facts.item_id)
        truth = self.item_topic.get(facts.item_id)
        known = truth is not None
        if truth is None:  # an item the world does not list: its creator's usual live topic, if any
            truth = self.author_topic.get(facts.author_id, int(rng.integers(0, len(self.topics))))
        right = rng.random() < self.accuracy
        return (int(truth) if right else self._wrong(rng, int(truth))), known

    def entity(self, facts) -> str | None:
        """The first invented entity the item's text names (the world knowledge resolves it)."""
        for name in _NAME.findall(f"{facts.title} {facts.body_text}"):
            if name in self.entity_topic:
                return name
        return None

    def _item(self, facts) -> tuple[dict, int]:
        topic, _ = self.said_topic(facts)
        t = self.topics[topic]
        entity = self.entity(facts)
        n = SHORT_MAX_CHARS
        return ({"vertical_domain": t.l1[:n], "key_subject": (entity or t.l3)[:n], "content_theme": t.l2[:n]},
                topic)

    # ------------------------------------------------------------------------------------ pairs
    def answer(self, pair) -> str:
        """One pair's answer as JSON text (validated like any teacher's)."""
        photo, kp = self._item(pair.photo)
        live, kl = self._item(pair.live)
        same_l1 = kp // 3 == kl // 3
        carried = float(self.transfer[kp, kl] / max(self.transfer[kp].max(), 1e-12))
        score = round(0.5 * (kp == kl) + 0.3 * same_l1 + 0.2 * carried, 4)
        verdict = "share a topic" if kp == kl else "differ in topic"
        reason = (f"{LABEL}: {photo['key_subject']} ({self.topics[kp].l3}) and {live['key_subject']} "
                  f"({self.topics[kl].l3}) {verdict}")
        return json.dumps({"photo": photo, "live": live, "match": bool(kp == kl), "reason": reason[:240],
                           "semantic_transferability": score}, ensure_ascii=False)

    def generate(self, requests: list) -> list:
        """Answers from the latent truth; never fails."""
        return [Completion(self.answer(r.pair)) for r in requests]
