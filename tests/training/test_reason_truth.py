"""The teacher judged against the world's latent truth: ROC AUC of semantic_transferability (same vs
cross topic) and vertical_domain against the true topic's vertical, teacher and baseline on the same pairs.

The world's latent truth is written here through `rgcd.transforms.latent` (interface 3) for the tiny
world: item_id -> topic, with some items whose category path disagrees with their true topic.
"""

import json

import polars as pl
import pytest

from rgcd.config import Settings
from rgcd.training.frames import read_stage1_frames
from rgcd.training.reasoning.backends import Completion, MetadataTeacher
from rgcd.training.reasoning.run import reason, select_pairs
from rgcd.training.reasoning.truth import demo_topic_verticals, roc_auc, same_vertical

# The tiny world's verticals as topics of the demo taxonomy (rgcd.transforms.demo.TOPICS).
TOPIC_OF = {"Gaming": 0, "Music": 3, "Food": 6, "Sports": 9, "Beauty": 12}


def test_roc_auc_counts_ties_half():
    assert roc_auc([0.9, 0.8, 0.3, 0.3], [True, False, True, False]) == pytest.approx(2.5 / 4)
    assert roc_auc([0.1, 0.2], [False, True]) == 1.0 and roc_auc([0.5, 0.5], [True, True]) is None


def test_vertical_names_match_by_words():
    assert same_vertical("food", "Food") and same_vertical("Beauty", "Beauty and Fashion")
    assert same_vertical("beauty & fashion", "Beauty and Fashion")
    assert not same_vertical("cooking", "Food") and not same_vertical("and", "Beauty and Fashion")
    assert demo_topic_verticals()[12] == "Beauty and Fashion"


def _latent_topics(world_ws) -> dict[str, int]:
    """True topics: the category's topic, except every 4th item, which truly belongs to the next one."""
    items = pl.read_parquet(world_ws.marts / "item_content.parquet").sort("item_id")
    order = list(TOPIC_OF.values())
    out = {}
    for k, (item_id, l1) in enumerate(items.select("item_id", "category_l1").iter_rows()):
        topic = TOPIC_OF[l1]
        out[item_id] = order[(order.index(topic) + 1) % len(order)] if k % 4 == 0 else topic
    return out


class Constant:
    """A scripted teacher that knows nothing: the same score and vertical for every pair."""

    teacher_id = "constant-test-teacher"
    is_llm = False
    batch_size = 8

    def generate(self, requests):
        item = {"vertical_domain": "unknown", "key_subject": "x", "content_theme": "x"}
        text = json.dumps({"photo": item, "live": item, "match": False, "reason": "constant",
                           "semantic_transferability": 0.5})
        return [Completion(text) for _ in requests]


def _write_latent(ws, topics: dict[str, int]) -> None:
    from rgcd.transforms.latent import LatentTruth, write_latent

    items = pl.DataFrame({"item_id": list(topics), "topic": list(topics.values())})
    empty_users = pl.DataFrame(schema={"user_id": pl.Int64, "interests": pl.List(pl.Float32)})
    empty_links = pl.DataFrame(schema={"user_id": pl.Int64, "author_id": pl.Int64, "plays": pl.Int64})
    write_latent(ws.root, LatentTruth(items=items, users=empty_users, user_authors=empty_links,
                                      params={"version": 1}))


def test_reason_reports_truth_figures_for_teacher_and_baseline_on_the_same_pairs(world_ws):
    topics = _latent_topics(world_ws)
    _write_latent(world_ws, topics)
    s = Settings()
    s = s.model_copy(update={"teacher": s.teacher.model_copy(update={"max_pairs": 40,
                                                                    "free_teacher_pairs": 40,
                                                                    "strength_bands": 1,
                                                                    "max_pairs_per_item": 100})})

    baseline = reason(world_ws, s, show_progress=False)
    truth = json.loads((world_ws.reports / "reason.json").read_text())["truth"]
    assert truth == baseline.truth and truth["teacher"] == truth["metadata_baseline"]  # the baseline itself
    assert "latent" in truth["truth"]
    figures = truth["teacher"]
    assert figures["pairs"] == 40 and figures["same_topic_pairs"] > 0 and figures["cross_topic_pairs"] > 0
    # the baseline reads the vertical off the category path: right exactly where it agrees with the truth
    verticals = demo_topic_verticals()
    picked, _ = select_pairs(read_stage1_frames(world_ws, s), 40, 0.0, 100)
    expected = [
        same_vertical(facts.categories[0], verticals[topics[facts.item_id]])
        for p in picked
        for facts in (p.photo, p.live)
    ]
    assert 0 < sum(expected) < len(expected)
    assert figures["vertical_match_rate"] == round(sum(expected) / len(expected), 4)
    assert 0.5 < figures["vertical_match_rate"] < 1.0
    assert figures["transferability_auc"] > 0.6  # same category -> higher score, mostly same topic
    assert "AUC" in baseline.one_line()

    knows_nothing = reason(world_ws, s, show_progress=False, teacher=Constant())
    t, b = knows_nothing.truth["teacher"], knows_nothing.truth["metadata_baseline"]
    assert t["transferability_auc"] == 0.5 and t["vertical_match_rate"] == 0.0
    assert b == figures  # the baseline on the very same pairs


def test_no_latent_truth_no_figures(world_ws):
    report = reason(world_ws, Settings(), show_progress=False)
    assert report.truth is None
    assert json.loads((world_ws.reports / "reason.json").read_text())["truth"] is None
    assert MetadataTeacher.teacher_id.endswith("(not an LLM)")
