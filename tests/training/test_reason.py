import json

import polars as pl
import pytest

from rgcd.config import Settings
from rgcd.training.frames import MissingInput, read_stage1_frames
from rgcd.training.reasoning.backends import METADATA_TEACHER_ID, Completion, MetadataTeacher
from rgcd.training.reasoning.run import (
    ITEM_REASONING_SCHEMA,
    PAIR_REASONING_SCHEMA,
    answer_pairs,
    reason,
    select_pairs,
)


def _settings(**teacher) -> Settings:
    """The strongest-first selection under `max_pairs` (what most tests here pin), unless overridden."""
    s = Settings()
    teacher = {"strength_bands": 1, "free_teacher_pairs": 1, **teacher}
    return s.model_copy(update={"teacher": s.teacher.model_copy(update=teacher)})


def test_reason_writes_the_contract_tables_with_the_baseline_named(world_ws):
    report = reason(world_ws, _settings(max_pairs=30, max_pairs_per_item=1000), show_progress=False)
    pairs = pl.read_parquet(world_ws.feature_data / "pair_reasoning.parquet")
    items = pl.read_parquet(world_ws.feature_data / "item_reasoning.parquet")
    assert dict(pairs.schema) == PAIR_REASONING_SCHEMA
    assert dict(items.schema) == ITEM_REASONING_SCHEMA
    assert report.pairs_selected == 30 == pairs.height
    assert "not an LLM" in report.teacher_id and not report.is_llm
    assert set(pairs["teacher_id"]) == {METADATA_TEACHER_ID}
    assert pairs["semantic_transferability"].is_between(0, 1).all()
    assert items["item_id"].is_unique().all()
    # every item that appears in an accepted pair has its knowledge
    live_or_photo = set(pairs["photo_item_id"]) | {t for t in pairs["target_id"] if t.startswith("live:")}
    assert live_or_photo <= set(items["item_id"])
    # the strongest pairs are the ones taken
    bp = pl.read_parquet(world_ws.marts / "behaviour_pairs.parquet")
    assert pairs.join(bp, on="pair_id")["strength"].min() >= bp["strength"].sort(descending=True)[31]
    saved = json.loads((world_ws.reports / "reason.json").read_text())
    assert saved["teacher_id"] == METADATA_TEACHER_ID and saved["accepted"] == 30


def test_metadata_teacher_judges_from_categories(world_ws):
    frames = read_stage1_frames(world_ws, Settings())
    pairs, _ = select_pairs(frames, 100, 0.0)
    for p in pairs:
        answer = json.loads(MetadataTeacher().answer(p))
        assert answer["photo"]["vertical_domain"] == p.photo.categories[0]
        assert answer["match"] == (p.photo.categories[0] == p.live.categories[0])
        assert answer["match"] or answer["semantic_transferability"] < 0.5


def test_per_item_cap_spreads_the_budget(world_ws):
    frames = read_stage1_frames(world_ws, Settings())
    capped, _ = select_pairs(frames, 1000, 0.0, max_per_item=2)
    uncapped, _ = select_pairs(frames, 1000, 0.0)
    from collections import Counter

    uses = Counter([p.photo.item_id for p in capped] + [p.live.item_id for p in capped])
    assert max(uses.values()) == 2 and len(capped) < len(uncapped)
    assert [p.strength for p in capped] == sorted((p.strength for p in capped), reverse=True)


def test_author_pairs_use_the_authors_latest_live_room(world_ws):
    frames = read_stage1_frames(world_ws, Settings())
    pairs, unresolved = select_pairs(frames, 1000, 0.0)
    author_pairs = [p for p in pairs if p.target_id.startswith("author:")]
    assert author_pairs and unresolved == 0
    for p in author_pairs:
        assert p.live.domain == "live" and f"author:{p.live.author_id}" == p.target_id


def test_min_strength_cuts_weak_pairs(world_ws):
    report = reason(world_ws, _settings(min_strength=0.9), show_progress=False)
    bp = pl.read_parquet(world_ws.marts / "behaviour_pairs.parquet")
    assert report.pairs_selected == bp.filter(pl.col("strength") >= 0.9).height > 0


class Scripted:
    """A teacher that replays given answers per pair (to drive the retry logic deterministically)."""

    teacher_id = "scripted-test-teacher"
    is_llm = False
    batch_size = 4

    def __init__(self, script):
        self.script = script  # pair_id -> list of answers, one per attempt
        self.calls: list[list[dict]] = []
        self.attempts: dict[str, int] = {}

    def generate(self, requests):
        out = []
        for r in requests:
            self.calls.append(r.messages)
            answers = self.script(r.pair)
            attempt = self.attempts.get(r.pair.pair_id, 0)
            self.attempts[r.pair.pair_id] = attempt + 1
            text = answers[min(attempt, len(answers) - 1)]
            out.append(Completion(None, "ConnectionError: refused") if text is None else Completion(text))
        return out


def test_invalid_answer_is_retried_with_feedback_then_rejected_with_raw_text(world_ws):
    valid = MetadataTeacher().answer
    teacher = Scripted(lambda p: ["not json at all", valid(p)] if p.pair_id.endswith("0") else ["{oops"])
    report = reason(world_ws, _settings(max_pairs=12, retries=1), show_progress=False, teacher=teacher)
    q = pl.read_parquet(world_ws.quarantine_table("pair_reasoning"))
    assert report.rejected == q.height > 0 and report.accepted == 12 - q.height
    assert set(q["raw_text"]) == {"{oops"} and q["reason"].str.contains("unterminated").all()
    retried = [m for m in teacher.calls if len(m) == 4]
    assert retried and "invalid" in retried[0][-1]["content"]
    accepted = pl.read_parquet(world_ws.feature_data / "pair_reasoning.parquet")
    assert set(accepted["pair_id"]).isdisjoint(set(q["pair_id"]))


def test_interrupted_run_resumes_from_the_cache(world_ws):
    class Dies(MetadataTeacher):
        teacher_id = METADATA_TEACHER_ID
        batch_size = 5

        def __init__(self):
            self.batches = 0

        def generate(self, requests):
            self.batches += 1
            if self.batches == 3:
                raise KeyboardInterrupt
            return super().generate(requests)

    with pytest.raises(KeyboardInterrupt):
        reason(world_ws, _settings(max_pairs=20), show_progress=False, teacher=Dies())
    again = Dies()
    report = reason(world_ws, _settings(max_pairs=20), show_progress=False, teacher=again)
    assert (report.from_cache, report.generated, report.accepted) == (10, 10, 20)
    third = reason(world_ws, _settings(max_pairs=20), show_progress=False)
    assert (third.from_cache, third.generated) == (20, 0)


def test_missing_marts_say_which_command_to_run(tmp_path):
    from rgcd.config import Workspace

    with pytest.raises(MissingInput, match="rgcd build"):
        reason(Workspace(tmp_path).ensure(), Settings(), show_progress=False)


def test_answer_pairs_counts_attempts(world_ws):
    pairs, _ = select_pairs(read_stage1_frames(world_ws, Settings()), 3, 0.0)
    from rgcd.training.reasoning.backends import TeacherRequest
    from rgcd.training.reasoning.prompts import pair_messages

    teacher = Scripted(lambda p: [None, "nope", MetadataTeacher().answer(p)])
    done = answer_pairs(teacher, [TeacherRequest(p, pair_messages(p)) for p in pairs], retries=2)
    assert [d.status for d in done] == ["accepted"] * 3 and [d.attempts for d in done] == [3] * 3
    done = answer_pairs(Scripted(lambda p: [None]), [TeacherRequest(pairs[0], pair_messages(pairs[0]))], 1)
    assert done[0].status == "unanswered" and "refused" in done[0].error


def test_pairs_the_teacher_never_answered_are_asked_again_on_the_next_run(world_ws):
    # A server that is down is no answer: nothing to cache, so a rerun once it is up asks again.
    down = reason(world_ws, _settings(max_pairs=6, retries=0), show_progress=False,
                  teacher=Scripted(lambda p: [None]))
    assert down.accepted == 0 and down.rejected == 6
    up = reason(world_ws, _settings(max_pairs=6, retries=0), show_progress=False,
                teacher=Scripted(lambda p: [MetadataTeacher().answer(p)]))
    assert (up.from_cache, up.generated, up.accepted) == (0, 6, 6)


def test_an_author_pair_never_shows_a_room_that_started_after_the_pair():
    # Reasoning about the pair is stamped with its last co-engagement; a room the author started
    # later is the future at that time, so the teacher must not be shown it.
    from datetime import UTC, datetime, timedelta

    from rgcd.training.frames import Stage1Frames

    t = datetime(2026, 3, 5, tzinfo=UTC)
    cats = {f"category_l{i}": ["Food"] * 3 for i in range(1, 5)}
    items = pl.DataFrame({
        "item_id": ["photo:1", "live:10", "live:11"], "domain": ["photo", "live", "live"],
        "author_id": [1, 7, 7], "title": ["p", "before", "after"], "body_text": ["", "", ""], **cats,
        "start_timestamp": [None, t - timedelta(days=1), t + timedelta(days=1)]})
    pairs = pl.DataFrame({
        "pair_id": ["photo:1|author:7"], "pair_type": ["photo_live_author"], "photo_item_id": ["photo:1"],
        "target_id": ["author:7"], "author_id": [7], "co_count": [3], "distinct_users": [2],
        "strength": [0.9], "event_timestamp": [t]})
    selected, unresolved = select_pairs(Stage1Frames(pairs, items, t + timedelta(days=2)), 10, 0.0)
    assert unresolved == 0 and [p.live.item_id for p in selected] == ["live:10"]


def test_reading_the_strongest_prefix_selects_what_the_whole_mart_would(world_ws):
    """reason reads only a prefix of the pair ranking (and the items of its creators): the pairs
    it selects are exactly those select_pairs takes from every pair; a tight per-item cap makes
    the prefix grow."""
    from rgcd.training.reasoning.run import _select_strongest

    full = read_stage1_frames(world_ws, Settings())
    for budget, per_item in ((5, 1000), (20, 1), (40, 1)):
        settings = _settings(max_pairs=budget, max_pairs_per_item=per_item)
        frames, pairs, unresolved = _select_strongest(world_ws, settings, budget, None)
        want, want_unresolved = select_pairs(full, budget, 0.0, per_item)
        assert [p.pair_id for p in pairs] == [p.pair_id for p in want]
        assert [(p.photo, p.live) for p in pairs] == [(p.photo, p.live) for p in want]  # same facts
        assert frames.pairs_ranked == full.pairs.height
        if budget == 5:
            assert frames.pairs.height == 40 < full.pairs.height and frames.items.height < full.items.height


def test_authors_with_uncategorised_rooms_get_their_top_category():
    # A streamer who posts no short videos has rooms with no category; an author with both
    # categorised and uncategorised items used to raise a polars ShapeError here.
    from rgcd.training.reasoning.run import _creator_facts

    items = pl.DataFrame({
        "author_id": [1, 1, 1, 1, 2, 3],
        "domain": ["photo", "photo", "photo", "live", "live", "photo"],
        "category_l1": ["Food", "Food", "", None, None, ""],
    })
    assert _creator_facts(items) == {1: (3, 1, "Food"), 2: (0, 1, ""), 3: (1, 0, "")}


def test_a_free_teacher_judges_room_pairs_from_every_band_of_strength_and_none_after_the_cut(world_ws):
    from datetime import timedelta

    bp = pl.read_parquet(world_ws.marts / "behaviour_pairs.parquet")
    rooms = bp.filter(pl.col("pair_type") == "photo_live_room")
    cut = rooms["event_timestamp"].sort()[rooms.height * 2 // 3]
    requests = [cut - timedelta(days=1), cut]
    pl.DataFrame({"split": ["train", "test"], "request_timestamp": requests}).write_parquet(
        world_ws.marts / "eval_live_room.parquet")
    # an LLM's budget is max_pairs; a free teacher's is free_teacher_pairs, spread over 4 bands
    report = reason(world_ws, _settings(max_pairs=8, free_teacher_pairs=40, strength_bands=4,
                                        max_pairs_per_item=1000), show_progress=False)
    judged = pl.read_parquet(world_ws.feature_data / "pair_reasoning.parquet").join(bp, on="pair_id")
    before = rooms.filter(pl.col("event_timestamp") < cut)
    assert report.pairs_selected == judged.height == min(40, before.height) > 8
    assert judged["target_id"].str.starts_with("live:").all()
    assert (judged["event_timestamp"] < cut).all()  # nothing from the test period
    # every quarter of the strength distribution is judged, weak pairs included
    edges = before["strength"].quantile(0.25), before["strength"].quantile(0.75)
    assert (judged["strength"] <= edges[0]).sum() >= 5 and (judged["strength"] >= edges[1]).sum() >= 5
    assert report.selection["budget"] == 40 and report.selection["cut"] == cut.isoformat()
