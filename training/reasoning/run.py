"""`rgcd reason`: pick high-confidence behaviour pairs, ask the teacher, validate, write the reasoning tables.

Writes `<ws>/feature_data/pair_reasoning.parquet` and `item_reasoning.parquet` (the tables the Feast
reasoning views read), rejected answers with their raw text to `<ws>/quarantine/pair_reasoning.parquet`,
and `<ws>/reports/reason.json`.
"""

from __future__ import annotations

import bisect
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rgcd.atomic import write_json_atomic, write_parquet_atomic
from rgcd.config import Settings, TeacherConfig, Workspace
from rgcd.faults import kill_point
from rgcd.redaction import redact
from rgcd.training.frames import PAIR_RANKING, MissingInput, Stage1Frames, read_stage1_frames, stage1_cut
from rgcd.training.reasoning.backends import (
    MetadataTeacher,
    Teacher,
    TeacherRequest,
    TeacherUnreachable,
    make_teacher,
)
from rgcd.training.reasoning.cache import AnswerCache, CachedAnswer
from rgcd.training.reasoning.prompts import PROMPT_VERSION, ItemFacts, PairFacts, content_hash, pair_messages
from rgcd.training.reasoning.schema import ITEM_FIELDS, SchemaError, parse_pair_answer
from rgcd.training.reasoning.truth import load_item_topics, truth_figures
from rgcd.transforms.covers import CoverPolicy, recorded_roots

ITEM_REASONING_SCHEMA = {
    "item_id": pl.Utf8,
    "vertical_domain": pl.Utf8,
    "key_subject": pl.Utf8,
    "content_theme": pl.Utf8,
    "teacher_id": pl.Utf8,
    "prompt_version": pl.Utf8,
    "event_timestamp": pl.Datetime("ms", "UTC"),
    "created_timestamp": pl.Datetime("ms", "UTC"),
}
PAIR_REASONING_SCHEMA = {
    "pair_id": pl.Utf8,
    "photo_item_id": pl.Utf8,
    "target_id": pl.Utf8,
    "match": pl.Boolean,
    "reason": pl.Utf8,
    "semantic_transferability": pl.Float64,
    "teacher_id": pl.Utf8,
    "prompt_version": pl.Utf8,
    "event_timestamp": pl.Datetime("ms", "UTC"),
    "created_timestamp": pl.Datetime("ms", "UTC"),
}


# The first prefix of the pair ranking read is this many pairs per pair of the teacher's budget:
# enough for the per-item cap to pass over some and still fill the budget.
PREFIX_PAIRS_PER_BUDGET = 8


@dataclass
class ReasonReport:
    """Figures of one `rgcd reason` run."""

    teacher_id: str
    is_llm: bool
    prompt_version: str
    pairs_available: int
    pairs_selected: int
    pairs_unresolved: int
    from_cache: int
    generated: int
    accepted: int
    rejected: int
    items_with_reasoning: int
    generation_seconds: float
    pairs_per_minute: float | None
    schema_valid_rate: float | None
    # Against the world's latent truth, teacher and metadata baseline on the same pairs (truth.py);
    # None where the world carries no truth (real data).
    truth: dict | None = None
    # How the pairs were chosen: the budget, the cut, pairs per band of behaviour strength.
    selection: dict | None = None
    online: str = ""

    def one_line(self) -> str:
        """The run in one line of figures."""
        rate = f"{self.schema_valid_rate:.0%}" if self.schema_valid_rate is not None else "n/a"
        speed = f", {self.pairs_per_minute:.0f} pairs/min" if self.pairs_per_minute else ""
        truth = ""
        if self.truth and self.truth["teacher"]["transferability_auc"] is not None:
            t, b = self.truth["teacher"], self.truth["metadata_baseline"]
            truth = (
                f"; vs truth: AUC {t['transferability_auc']:.2f} (baseline {b['transferability_auc']:.2f}), "
                f"vertical {t['vertical_match_rate']:.0%} (baseline {b['vertical_match_rate']:.0%})"
            )
        return (
            f"teacher {self.teacher_id}: {self.pairs_selected} pairs ({self.from_cache} cached, "
            f"{self.generated} generated{speed}), {self.accepted} accepted, {self.rejected} rejected "
            f"(valid {rate}), {self.items_with_reasoning} items with reasoning{truth}"
            + (f"; {self.online}" if self.online else "")
        )


def _creator_facts(items: pl.DataFrame) -> dict[int, tuple[int, int, str]]:
    counts = items.group_by("author_id").agg(
        (pl.col("domain") == "photo").sum().alias("photos"),
        (pl.col("domain") == "live").sum().alias("lives"),
        # One predicate on the whole column: a separate drop_nulls() shortens the column and the
        # filter's mask no longer lines up (authors whose rooms have no category, such as
        # streamers who post no short videos, raised a ShapeError).
        pl.col("category_l1")
        .filter(pl.col("category_l1").is_not_null() & (pl.col("category_l1") != ""))
        .mode()
        .sort()
        .first()
        .alias("top"),
    )
    return {r["author_id"]: (r["photos"], r["lives"], r["top"] or "") for r in counts.iter_rows(named=True)}


def _item_facts(row: dict, creators: dict[int, tuple[int, int, str]]) -> ItemFacts:
    photos, lives, top = creators.get(row["author_id"], (0, 0, ""))
    return ItemFacts(
        item_id=row["item_id"],
        domain=row["domain"],
        title=row["title"] or "",
        body_text=row["body_text"] or "",
        categories=tuple(row[f"category_l{i}"] or "" for i in range(1, 5)),
        author_id=int(row["author_id"]),
        creator_photos=int(photos),
        creator_lives=int(lives),
        creator_top_category=top,
        cover_path=row.get("cover_path"),
    )


def select_pairs(
    frames: Stage1Frames, max_pairs: int, min_strength: float, max_per_item: int | None = None,
    band_quota: int | None = None,
) -> tuple[list[PairFacts], int]:
    """The strongest pairs (strength >= min_strength), at most `max_pairs`, with both items' facts.

    Taken strongest first; a pair is passed over once its short video or its live room already has
    `max_per_item` pairs, so the budget covers more items. With `band_quota`, `frames.pairs` carries
    `band` and `band_rank` (`_stratified_pair_ids`): pairs are taken band by band in rank order, at
    most `band_quota` from each. An author pair ('photo_live_author') is
    shown to the teacher with the author's latest live room started by the pair's last co-engagement
    (its event_timestamp) as its live item. Returns the pairs and
    how many were skipped because an item had no content.
    """
    items = frames.items
    creators = _creator_facts(items)
    by_id = {r["item_id"]: r for r in items.iter_rows(named=True)}
    # Per author, rooms by start time: an author pair shows the latest room started by the pair's
    # last co-engagement, never a later one (the reasoning row is stamped with that time).
    rooms: dict[int, tuple[list, list[str]]] = {}
    live_rooms = items.filter((pl.col("domain") == "live") & pl.col("start_timestamp").is_not_null())
    for r in live_rooms.sort("start_timestamp", "item_id").iter_rows(named=True):
        starts, ids = rooms.setdefault(r["author_id"], ([], []))
        starts.append(r["start_timestamp"])
        ids.append(r["item_id"])

    def latest_live(author_id: int, at) -> str | None:
        starts, ids = rooms.get(author_id, ([], []))
        k = bisect.bisect_right(starts, at)
        return ids[k - 1] if k else None

    ranked = frames.pairs.filter(pl.col("strength") >= min_strength)
    if band_quota is None:
        ranked = ranked.sort([col for col, _ in PAIR_RANKING], descending=[desc for _, desc in PAIR_RANKING])
    else:
        ranked = ranked.sort("band", "band_rank")
    selected: list[PairFacts] = []
    unresolved = 0
    per_item: Counter[str] = Counter()
    per_band: Counter[int] = Counter()
    for p in ranked.iter_rows(named=True):
        if len(selected) >= max_pairs:
            break
        if band_quota is not None and per_band[p["band"]] >= band_quota:
            continue
        live_id = (p["target_id"] if p["target_id"].startswith("live:")
                   else latest_live(p["author_id"], p["event_timestamp"]))
        photo, live = by_id.get(p["photo_item_id"]), by_id.get(live_id) if live_id else None
        if photo is None or live is None:
            unresolved += 1
            continue
        if max_per_item and max(per_item[photo["item_id"]], per_item[live["item_id"]]) >= max_per_item:
            continue
        per_item[photo["item_id"]] += 1
        per_item[live["item_id"]] += 1
        if band_quota is not None:
            per_band[p["band"]] += 1
        selected.append(
            PairFacts(
                pair_id=p["pair_id"],
                pair_type=p["pair_type"],
                photo_item_id=p["photo_item_id"],
                target_id=p["target_id"],
                co_count=int(p["co_count"]),
                distinct_users=int(p["distinct_users"]),
                strength=float(p["strength"]),
                event_timestamp=p["event_timestamp"],
                photo=_item_facts(photo, creators),
                live=_item_facts(live, creators),
            )
        )
    return selected, unresolved


def teacher_budget(cfg: TeacherConfig, teacher: Teacher) -> int:
    """Pairs the teacher judges: `max_pairs` for an LLM, at least `free_teacher_pairs` for a
    teacher that costs nothing (the metadata baseline, the simulated world teacher)."""
    return cfg.max_pairs if teacher.is_llm else max(cfg.max_pairs, cfg.free_teacher_pairs)


def _stratified_pair_ids(ws: Workspace, settings: Settings, cut: datetime | None, bands: int,
                         per_band: int, min_strength: float) -> tuple[pl.DataFrame, int]:
    """Room pairs before `cut` with strength >= `min_strength`, in `bands` equal-count bands of
    strength; the first `per_band` of each band in a hash order of pair_id (a fixed random
    sample); ranked by DuckDB under the run's memory limit. Returns (pair_id, photo_item_id,
    author_id, band, band_rank) and how many pairs qualify."""
    from rgcd.memory import duckdb_connect

    path = ws.marts / "behaviour_pairs.parquet"
    if not path.exists():
        raise MissingInput(f"{path} is missing: run `rgcd build` (dbt) first; stage 1 reads the "
                           "behaviour_pairs mart")
    params = {"path": str(path), "min_strength": min_strength, "bands": bands}
    before = ""
    if cut is not None:
        before, params["cut"] = "AND event_timestamp < $cut", cut
    con = duckdb_connect(ws, settings)
    try:
        con.execute(f"""
            CREATE TEMP TABLE banded AS
            SELECT pair_id, photo_item_id, author_id,
                   ntile($bands) OVER (ORDER BY strength, pair_id) AS band
            FROM read_parquet($path)
            WHERE pair_type = 'photo_live_room' AND strength >= $min_strength {before}""", params)
        eligible = con.execute("SELECT count(*) FROM banded").fetchall()[0][0]
        chosen = pl.from_arrow(con.sql(f"""
            SELECT pair_id, photo_item_id, author_id, band, band_rank FROM (
                SELECT *, row_number() OVER (PARTITION BY band ORDER BY md5(pair_id), pair_id) AS band_rank
                FROM banded)
            WHERE band_rank <= {int(per_band)} ORDER BY band, band_rank""").to_arrow_table())
    finally:
        con.close()
    return chosen, int(eligible)


def _select_strongest(ws: Workspace, settings: Settings, budget: int,
                      cut: datetime | None) -> tuple[Stage1Frames, list[PairFacts], int]:
    """select_pairs over the strongest pairs only, read in growing prefixes of the ranking.

    The selection takes pairs strongest first and each decision depends only on the pairs before
    it, so running it on the first N pairs of the ranking gives the same pairs as on all of them
    whenever it fills its budget inside those N; otherwise N grows (x4) until it does or the
    prefix is the whole ranking. Memory follows N (a few times the budget), not the mart.
    """
    cfg = settings.teacher
    limit = budget * PREFIX_PAIRS_PER_BUDGET
    while True:
        frames = read_stage1_frames(ws, settings, strongest_pairs=limit, min_strength=cfg.min_strength,
                                    cut=cut)
        pairs, unresolved = select_pairs(frames, budget, cfg.min_strength, cfg.max_pairs_per_item)
        if len(pairs) >= budget or frames.pairs_complete:
            return frames, pairs, unresolved
        limit *= 4


def _select_stratified(ws: Workspace, settings: Settings, budget: int,
                       cut: datetime | None) -> tuple[Stage1Frames, list[PairFacts], int]:
    """select_pairs band by band (`teacher.strength_bands` bands of strength, `budget / bands` each),
    reading a growing sample of each band (x4) until every band fills or is read whole."""
    from dataclasses import replace as with_fields

    cfg = settings.teacher
    quota = -(-budget // cfg.strength_bands)
    limit = quota * PREFIX_PAIRS_PER_BUDGET
    while True:
        ids, eligible = _stratified_pair_ids(ws, settings, cut, cfg.strength_bands, limit, cfg.min_strength)
        frames = read_stage1_frames(ws, settings, cut=cut, pair_ids=ids)
        frames = with_fields(frames, pairs=frames.pairs.join(ids.select("pair_id", "band", "band_rank"),
                                                             on="pair_id"),
                             pairs_ranked=eligible, pairs_complete=ids.height >= eligible)
        pairs, unresolved = select_pairs(frames, budget, cfg.min_strength, cfg.max_pairs_per_item, quota)
        if len(pairs) >= budget or frames.pairs_complete:
            return frames, pairs, unresolved
        limit *= 4


def covers_under(ws: Workspace, pair: PairFacts) -> PairFacts:
    """`pair` with relative cover paths made absolute: they are relative to the workspace folder."""
    def absolute(item: ItemFacts) -> ItemFacts:
        if not item.cover_path or Path(item.cover_path).is_absolute():
            return item
        return replace(item, cover_path=str(ws.root / item.cover_path))

    return replace(pair, photo=absolute(pair.photo), live=absolute(pair.live))


def _retry_messages(messages: list[dict], raw: str, error: str) -> list[dict]:
    """The conversation for a retry: the invalid answer and what was wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": raw},
        {
            "role": "user",
            "content": f"That answer is invalid ({error}). Reply with only the JSON object, "
            "exactly the keys asked for.",
        },
    ]


def _fail_when_nothing_reached(teacher: Teacher, completions: list) -> None:
    """Raise TeacherUnreachable when no request of a batch reached the model (after the backend's
    own retries): a model that is not there is the stage's failure, not every pair's rejection."""
    if not completions or any(getattr(c, "reached", True) for c in completions):
        return
    base_url = getattr(getattr(teacher, "cfg", None), "base_url", None)
    where = f" at {base_url}" if base_url and teacher.teacher_id.startswith("openai") else ""
    raise TeacherUnreachable(
        f"the teacher {teacher.teacher_id}{where} could not be reached: none of {len(completions)} "
        f"requests got an answer ({completions[0].error}); check that the model server is running and "
        "listening there (teacher.base_url, teacher.timeout_s), or choose another teacher.backend. "
        "Nothing was written: the previous reasoning tables are kept (answers already received are "
        "cached, so a rerun resumes)")


def answer_pairs(teacher: Teacher, requests: list[TeacherRequest], retries: int) -> list[CachedAnswer]:
    """Ask the teacher, validate, retry invalid answers up to `retries` times; one answer each.

    An answer is 'accepted', 'rejected' (invalid text on every attempt) or 'unanswered' (no text
    at all on the last attempt: a transport error, which the cache does not keep).
    """
    done: list[CachedAnswer | None] = [None] * len(requests)
    current = list(requests)
    last: list[tuple[str, str]] = [("", "")] * len(requests)
    todo = list(range(len(requests)))
    no_text: set[int] = set()  # the last attempt got no text at all (a transport error)
    for attempt in range(retries + 1):
        completions = teacher.generate([current[i] for i in todo])
        _fail_when_nothing_reached(teacher, completions)
        still = []
        for i, completion in zip(todo, completions, strict=True):
            if completion.text is None:
                last[i] = ("", completion.error or "no answer")
                no_text.add(i)
                still.append(i)
                continue
            no_text.discard(i)
            try:
                parsed = parse_pair_answer(completion.text)
                done[i] = CachedAnswer(
                    "accepted", completion.text, parsed.model_dump_json(), None, attempt + 1
                )
            except SchemaError as err:
                last[i] = (completion.text, str(err))
                current[i] = TeacherRequest(
                    requests[i].pair, _retry_messages(requests[i].messages, completion.text, str(err))
                )
                still.append(i)
        todo = still
        if not todo:
            break
    for i in todo:
        # No text on the last attempt means the transport failed (server down, timeouts): not an
        # answer, so it must not be cached as one; a rerun asks again.
        status = "unanswered" if i in no_text else "rejected"
        done[i] = CachedAnswer(status, last[i][0], None, last[i][1], retries + 1)
    return [d for d in done if d is not None]


def reason(
    ws: Workspace,
    settings: Settings,
    *,
    show_progress: bool = True,
    teacher: Teacher | None = None,
    item_topics: dict[str, int] | None = None,
) -> ReasonReport:
    """Run stage 1a end to end (see the module docstring); resumes from the answer cache.

    `teacher` overrides the backend the settings name (for callers that hold one already);
    `item_topics` (item_id -> true topic) is the truth to judge against where the workspace
    carries no latent truth of its own (a benchmark that knows its world).
    """
    cfg = settings.teacher
    # covers may come from the workspace and from the data folders ingest accepted them from
    covers = CoverPolicy.of(ws.root, [ws.root, *recorded_roots(ws.lake)], settings.ingest.cover_max_bytes)
    teacher = teacher or make_teacher(cfg, cache=ws.models / "teacher", covers=covers, workspace=ws)
    cut = stage1_cut(ws)
    budget = teacher_budget(cfg, teacher)
    select = _select_stratified if cfg.strength_bands > 1 else _select_strongest
    frames, pairs, unresolved = select(ws, settings, budget, cut)
    pairs = [covers_under(ws, p) for p in pairs]
    requests = [TeacherRequest(p, pair_messages(p)) for p in pairs]
    keys = [(content_hash(p), PROMPT_VERSION, teacher.teacher_id) for p in pairs]
    cache = AnswerCache(ws.models / "teacher" / "answers.sqlite")
    answers = cache.get_many(keys)
    from_cache = len(answers)
    todo = [i for i, k in enumerate(keys) if k not in answers]
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]reason[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=True,
    ) as progress:
        task = progress.add_task(teacher.teacher_id, total=len(todo))
        for start in range(0, len(todo), teacher.batch_size):
            chunk = todo[start : start + teacher.batch_size]
            finished = answer_pairs(teacher, [requests[i] for i in chunk], cfg.retries)
            rows = [(keys[i], a) for i, a in zip(chunk, finished, strict=True)]
            cache.put_many([(k, a) for k, a in rows if a.status != "unanswered"])  # the resume point
            kill_point("reason.batch_cached")
            answers.update(rows)
            progress.advance(task, len(chunk))
    seconds = time.perf_counter() - started
    cache.close()
    finished = [answers[k] for k in keys]
    first_appearance = dict(zip(frames.items["item_id"].to_list(),
                                frames.items["first_appearance"].to_list(), strict=True))
    report = _write_tables(ws, pairs, finished, teacher, first_appearance)
    report.update(
        truth=_truth(ws, pairs, finished, item_topics),
        pairs_available=frames.pairs_ranked if frames.pairs_ranked is not None else frames.pairs.height,
        pairs_unresolved=unresolved,
        selection=_selection_figures(pairs, cfg, budget, cut),
        from_cache=from_cache,
        generated=len(todo),
        generation_seconds=round(seconds, 3),
        pairs_per_minute=round(len(todo) / seconds * 60, 1) if todo and seconds > 0 else None,
    )
    from rgcd.featurestore.store import materialize_views

    # The features stage materialized before these tables existed: bring item_reasoning online now.
    report["online"] = materialize_views(ws, settings, ["item_reasoning", "pair_reasoning"])
    result = ReasonReport(**report)
    write_json_atomic(asdict(result), ws.reports / "reason.json")
    return result


def _selection_figures(pairs: list[PairFacts], cfg: TeacherConfig, budget: int, cut: datetime | None) -> dict:
    strengths = sorted(p.strength for p in pairs)
    bands = cfg.strength_bands
    return {"budget": budget, "cut": cut.isoformat() if cut is not None else None,
            "rule": (f"room pairs before the cut, {bands} equal-count bands of strength, a hashed sample "
                     "of each" if bands > 1 else "the strongest pairs"),
            "strength_quartiles": [round(strengths[int(q * (len(strengths) - 1))], 4)
                                   for q in (0, 0.25, 0.5, 0.75, 1)] if strengths else None}


def _truth(ws, pairs, answers, given: dict[str, int] | None) -> dict | None:
    """Truth figures against the caller's topics if given, else the workspace's latent truth."""
    if given is not None:
        return truth_figures(pairs, answers, given, MetadataTeacher().answer,
                             source="item topics given by the caller")
    return truth_figures(pairs, answers, load_item_topics(ws), MetadataTeacher().answer)


def _write_tables(
    ws: Workspace, pairs: list[PairFacts], answers: list[CachedAnswer], teacher: Teacher,
    first_appearance: dict[str, datetime],
) -> dict:
    """Write pair_reasoning and item_reasoning, stamped with when their evidence existed.

    event_timestamp: a pair's last co-engagement; an item's knowledge, the later of its first
    appearance (the event time of its item_content row) and the last co-engagement of the pair it
    was answered from: the teacher saw the partner item, which may exist only later, so the answer
    is evidence of that moment. An item's knowledge comes from its accepted pair with the earliest
    evidence (the strongest among equals), so it is visible as early as it honestly can be.
    created_timestamp: now, the generation time, which only breaks ties (a regeneration of the same
    evidence wins). A backfill over historical logs is so visible to point-in-time frames after its
    evidence and never before it (docs/features.md).
    """
    created = datetime.now(UTC)
    pair_rows, item_rows, rejected_rows = [], {}, []
    for pair, answer in zip(pairs, answers, strict=True):
        if answer.status != "accepted":
            rejected_rows.append(
                {
                    "pair_id": pair.pair_id,
                    "teacher_id": teacher.teacher_id,
                    "prompt_version": PROMPT_VERSION,
                    # a server's error body may echo the request's key: never stored as it came
                    "raw_text": redact(answer.raw_text),
                    "reason": redact(answer.error),
                    "attempts": answer.attempts,
                }
            )
            continue
        knowledge = json.loads(answer.parsed_json)
        seen = pair.event_timestamp
        pair_rows.append(
            {
                "pair_id": pair.pair_id,
                "photo_item_id": pair.photo_item_id,
                "target_id": pair.target_id,
                "match": knowledge["match"],
                "reason": knowledge["reason"],
                "semantic_transferability": knowledge["semantic_transferability"],
                "teacher_id": teacher.teacher_id,
                "prompt_version": PROMPT_VERSION,
                "event_timestamp": seen,
                "created_timestamp": created,
            }
        )
        # Pairs arrive strongest first: an item keeps the answer of its earliest-evidence pair, the
        # strongest among equals (a later pair replaces a row only when its evidence is earlier).
        for side, facts in (("photo", pair.photo), ("live", pair.live)):
            first = first_appearance.get(facts.item_id)
            stamp = seen if first is None else max(first, seen)
            held = item_rows.get(facts.item_id)
            if held is None or stamp < held["event_timestamp"]:
                item_rows[facts.item_id] = {
                    "item_id": facts.item_id,
                    **{f: knowledge[side][f] for f in ITEM_FIELDS},
                    "teacher_id": teacher.teacher_id,
                    "prompt_version": PROMPT_VERSION,
                    "event_timestamp": stamp,
                    "created_timestamp": created,
                }
    # Each table is renamed in whole; a kill between them is repaired by the rerun, which answers
    # every pair from the cache and writes both again.
    write_parquet_atomic(pl.DataFrame(pair_rows, schema=PAIR_REASONING_SCHEMA),
                         ws.feature_data / "pair_reasoning.parquet")
    kill_point("reason.between_tables")
    write_parquet_atomic(pl.DataFrame(list(item_rows.values()), schema=ITEM_REASONING_SCHEMA).sort("item_id"),
                         ws.feature_data / "item_reasoning.parquet")
    quarantine = ws.quarantine_table("pair_reasoning")
    if rejected_rows:
        write_parquet_atomic(pl.DataFrame(rejected_rows), quarantine)
    elif quarantine.exists():
        quarantine.unlink()
    finished = len(pair_rows) + len(rejected_rows)
    return {
        "teacher_id": teacher.teacher_id,
        "is_llm": teacher.is_llm,
        "prompt_version": PROMPT_VERSION,
        "pairs_selected": len(pairs),
        "accepted": len(pair_rows),
        "rejected": len(rejected_rows),
        "items_with_reasoning": len(item_rows),
        "schema_valid_rate": round(len(pair_rows) / finished, 4) if finished else None,
    }
