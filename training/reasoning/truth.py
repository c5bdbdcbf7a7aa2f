"""The teacher judged against the generator's latent truth (a demo world carries it; real data does not).

Two figures, on the pairs whose both items have a true topic and that the teacher answered:

- `transferability_auc`: ROC AUC of `semantic_transferability` for same-topic pairs (positives)
  against cross-topic pairs (negatives); 0.5 is chance, ties count half.
- `vertical_match_rate`: how often an answer's `vertical_domain` names the vertical of the item's
  true topic. A topic's vertical is its level-1 category in the demo taxonomy
  (`rgcd.transforms.demo.TOPICS[topic].l1`, e.g. "Food", "Beauty and Fashion"); a match is the same
  words ignoring case and punctuation, or one word of a multi-word vertical ("Beauty").

The metadata baseline is judged on the very same pairs, so a user choosing a teacher sees what each
one knows beyond the category path. The demo's categories are drawn from the topic, so the baseline
reads the vertical off the category path: it is the bar an LLM teacher has to clear, not a ceiling.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np

from rgcd.config import Workspace
from rgcd.training.reasoning.cache import CachedAnswer
from rgcd.training.reasoning.prompts import PairFacts

LATENT_SOURCE = "the world generator's latent topics (<workspace>/latent)"
VERTICAL_RULE = "level-1 category of the item's true topic in rgcd.transforms.demo.TOPICS"


def load_item_topics(ws: Workspace) -> dict[str, int] | None:
    """item_id -> true topic from the world's latent truth (interface 3), or None where there is none."""
    from rgcd.transforms.latent import load_latent

    latent = load_latent(ws)
    if latent is None:
        return None
    items = latent.items.select("item_id", "topic").drop_nulls()
    return dict(zip(items["item_id"].to_list(), (int(t) for t in items["topic"].to_list()), strict=True))


def demo_topic_verticals() -> dict[int, str]:
    """topic -> its vertical (level-1 category) in the demo taxonomy."""
    from rgcd.transforms.demo import TOPICS

    return {i: topic.l1 for i, topic in enumerate(TOPICS)}


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """ROC AUC (Mann-Whitney, average ranks for ties); None unless both classes are present."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average rank over each run of ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower().replace("&", " and "))


def same_vertical(answer: str, truth: str) -> bool:
    """Whether an answer's vertical_domain names the true vertical (see the module docstring)."""
    said, true = _words(answer), _words(truth)
    return said == true or (len(said) == 1 and said[0] in set(true) - {"and"})


def judge(
    pairs: Sequence[PairFacts],
    answers: Sequence[dict],
    item_topics: dict[str, int],
    topic_verticals: dict[int, str],
) -> dict:
    """The two figures for answers (parsed pair answers, one per pair) against the true topics."""
    scores, same, matched = [], [], []
    for pair, answer in zip(pairs, answers, strict=True):
        photo_topic, live_topic = item_topics[pair.photo.item_id], item_topics[pair.live.item_id]
        scores.append(float(answer["semantic_transferability"]))
        same.append(photo_topic == live_topic)
        for side, topic in (("photo", photo_topic), ("live", live_topic)):
            matched.append(same_vertical(answer[side]["vertical_domain"], topic_verticals.get(topic, "")))
    auc = roc_auc(scores, same)
    return {
        "pairs": len(scores),
        "same_topic_pairs": int(sum(same)),
        "cross_topic_pairs": len(same) - int(sum(same)),
        "transferability_auc": round(auc, 4) if auc is not None else None,
        "vertical_match_rate": round(sum(matched) / len(matched), 4) if matched else None,
    }


def truth_figures(
    pairs: Sequence[PairFacts],
    answers: Sequence[CachedAnswer],
    item_topics: dict[str, int] | None,
    baseline_answer,
    topic_verticals: dict[int, str] | None = None,
    source: str = LATENT_SOURCE,
) -> dict | None:
    """The teacher's and the metadata baseline's figures on the same pairs; None without latent truth.

    The pairs judged are those whose both items have a true topic and whose teacher answer was
    accepted; `baseline_answer(pair) -> JSON text` is the metadata baseline, asked about the same ones.
    """
    if item_topics is None:
        return None
    verticals = topic_verticals if topic_verticals is not None else demo_topic_verticals()
    judged = [
        (p, json.loads(a.parsed_json))
        for p, a in zip(pairs, answers, strict=True)
        if a.status == "accepted" and p.photo.item_id in item_topics and p.live.item_id in item_topics
    ]
    kept = [p for p, _ in judged]
    return {
        "truth": source,
        "vertical_of_topic": VERTICAL_RULE,
        "pairs_without_truth": sum(
            1 for p in pairs if p.photo.item_id not in item_topics or p.live.item_id not in item_topics
        ),
        "teacher": judge(kept, [a for _, a in judged], item_topics, verticals),
        "metadata_baseline": judge(
            kept, [json.loads(baseline_answer(p)) for p in kept], item_topics, verticals
        ),
    }
