"""Both evaluation protocols, full-sort, one code path for every model.

- **klm3-cdr**: the KuaiLive-M3 cross-domain benchmark's rules, read from the `eval_klm3_cdr`
  mart (source = photo_id, target = live author_id, per-user chronological 80/10/10). Each test
  user is scored against *all* live authors of the mart; items the user had in train or valid
  are excluded from the ranking unless they are also test positives, as RecBole's full-sort
  evaluation does. Positives: the user's test authors. Its validation cases (the `valid` split,
  train items excluded) are ranked by the same fitted models; the report chooses the strongest
  baseline on them. What is fitted on the catalogue (authors' content means) sees only rooms that
  started before the first live validation or test row (`klm3_cut`).
- **live-room**: the production task, read from `eval_live_room` + `live_schedule`. A test event
  is (user, request time); its positives are the rooms the user entered at that time and its
  candidates are the rooms on air then (start <= request < end, end NULL = still on air). Rooms
  a user entered before are *not* excluded: returning to a streamer is the common case.
  Training data: `user_item_interactions` strictly before the first test request (the cut).

Slices: `all`; `cold_start` (live-room: the mart's is_cold_start_user, no live history before
the cut; klm3-cdr: 10-core leaves no user without live history, so it is the quarter of test
users with the fewest live training interactions); `tail` (live-room: the mart's is_tail_item;
klm3-cdr: authors outside the most popular 20% by training interactions); and the slices where
only transferred content can help: `not_linked` (positives whose creator the user never played
as a short video before the request), `cold_start_not_linked` (both), `new_streamer` (positives
whose streamer has no live interaction before the cut) and `off_topic` (positives outside the
user's dominant short-video topic, category_l1, before the request). Live-room reads them from
the mart's columns (is_not_linked, is_new_streamer, is_off_topic: dbt/models/marts/
eval_live_room.yml); klm3-cdr, whose split is per user, computes them here from the user's train
split (`klm3_positive_flags`). In every slice but `all` and `cold_start` a case keeps only its
qualifying positives and is dropped if it has none; ranking is still over all candidates. Ties in
scores are broken by a seeded random order, never by id order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from rgcd.config import EvaluationConfig, Settings, Workspace
from rgcd.errors import RgcdError
from rgcd.training.marts import MissingMartError, interactions_before, read_mart
from rgcd.training.metrics import batch_metrics
from rgcd.training.recommender import ItemCatalog, Recommender, TrainData, torch_threads
from rgcd.training.results import (
    PER_CASE_METRICS,
    POSITIVE_FLAGS,
    PROTOCOLS,
    SLICES,
    EvaluationResult,
    ModelRun,
)
from rgcd.transforms.latent import load_latent


class EvaluationDataError(RgcdError):
    """The marts are there but define no test case for any protocol."""

    exit_code = 2


class EmptyProtocol(Exception):
    """A protocol without test cases at this data size; it is skipped and the report says why."""


@dataclass
class EvalSet:
    """Test cases of one protocol, ready to rank.

    Case i is user `users[i]`; its positives are candidate indices
    `pos_idx[pos_ptr[i]:pos_ptr[i+1]]`. Candidates are masked per case either by an exclusion
    list (klm3-cdr, same CSR layout) or by the on-air interval at `request_ms[i]` (live-room).
    `pos_flags[name]` (aligned with `pos_idx`, names in POSITIVE_FLAGS) says which positives
    belong to the slice `name`; a flag that is missing puts no positive in its slice.
    """

    protocol: str
    candidates: list[str]
    users: np.ndarray
    pos_ptr: np.ndarray
    pos_idx: np.ndarray
    cold_start: np.ndarray
    tail_item: np.ndarray
    excl_ptr: np.ndarray | None = None
    excl_idx: np.ndarray | None = None
    request_ms: np.ndarray | None = None
    cand_start_ms: np.ndarray | None = None
    cand_end_ms: np.ndarray | None = None
    notes: dict[str, int] = field(default_factory=dict)
    pos_flags: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_cases(self) -> int:
        return len(self.users)


@dataclass
class Protocol:
    """A protocol's training split, its test cases and, where the protocol has a validation split
    (klm3-cdr), its validation cases: where the strongest baseline is chosen."""

    name: str
    train: TrainData
    test: EvalSet
    valid: EvalSet | None = None


# ---- reading the marts -----------------------------------------------------------------------------





def _csr(groups: pl.DataFrame, n_cases: int, case_col: str, idx_col: str) -> tuple[np.ndarray, np.ndarray]:
    """CSR layout (ptr, idx) of (case, index) rows, cases 0..n_cases-1."""
    ptr, idx, _ = _csr_with(groups, n_cases, case_col, idx_col, ())
    return ptr, idx


def _csr_with(groups: pl.DataFrame, n_cases: int, case_col: str, idx_col: str,
              flags: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """`_csr`, plus the boolean columns `flags` in the order of `idx`."""
    groups = groups.sort(case_col, idx_col)
    counts = np.bincount(groups[case_col].to_numpy(), minlength=n_cases)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return (ptr, groups[idx_col].to_numpy().astype(np.int64),
            {f: groups[f].to_numpy().astype(bool) for f in flags})


def _tail_mask(train: pl.DataFrame, candidates: list[str], head_fraction: float) -> np.ndarray:
    """Candidates outside the most popular `head_fraction` of candidates (by training count)."""
    counts = dict(train.group_by("key").len().iter_rows())
    pop = np.array([counts.get(c, 0) for c in candidates], dtype=np.int64)
    n_head = int(np.ceil(head_fraction * len(candidates)))
    head = np.zeros(len(candidates), dtype=bool)
    head[np.argsort(-pop, kind="stable")[:n_head]] = True
    return ~head


def load_klm3_cdr(marts: dict[str, pl.DataFrame], cfg: EvaluationConfig) -> Protocol:
    """The klm3-cdr protocol from the eval_klm3_cdr and item_content marts, with its validation
    cases (the `valid` split, ranked like the test's with train items excluded), on which the
    strongest baseline is chosen."""
    ev = marts["eval_klm3_cdr"].with_columns(
        pl.when(pl.col("domain") == "photo")
        .then(pl.lit("photo:") + pl.col("item_id").cast(pl.Utf8))
        .otherwise(pl.lit("author:") + pl.col("item_id").cast(pl.Utf8))
        .alias("key"))
    train = (ev.filter(pl.col("split") == "train")
             .select("user_id", pl.col("key").alias("item_id"), "key", "domain", "event_timestamp"))
    live = ev.filter(pl.col("domain") == "live")
    if live.filter(pl.col("split") == "test").is_empty():
        raise EmptyProtocol(f"eval_klm3_cdr has no live test rows ({ev.height} rows in all; the "
                            "10-core filter leaves none when the data is small)")
    catalog = ItemCatalog(marts["item_content"], cut=klm3_cut(ev))
    candidates = sorted(live["key"].unique().to_list())
    test = _klm3_cases(live, train, marts["item_content"], cfg, candidates, "test", ("train", "valid"))
    valid = (_klm3_cases(live, train, marts["item_content"], cfg, candidates, "valid", ("train",))
             if not live.filter(pl.col("split") == "valid").is_empty() else None)
    return Protocol("klm3-cdr", TrainData("klm3-cdr", train, catalog), test, valid)


def _klm3_cases(live: pl.DataFrame, train: pl.DataFrame, content: pl.DataFrame, cfg: EvaluationConfig,
                candidates: list[str], split: str, seen_splits: tuple[str, ...]) -> EvalSet:
    """The klm3-cdr cases of one split: its live authors are the positives; the authors a user had
    in `seen_splits` are excluded from the ranking unless they are positives too."""
    cand_index = pl.DataFrame({"key": candidates, "cand": np.arange(len(candidates), dtype=np.int64)})
    cases = live.filter(pl.col("split") == split).select("user_id", "key").unique()
    users = np.sort(cases["user_id"].unique().to_numpy())
    case_of = pl.DataFrame({"user_id": users, "case": np.arange(len(users), dtype=np.int64)})
    pos = klm3_positive_flags(cases, train, content).join(case_of, on="user_id").join(cand_index, on="key")
    pos_ptr, pos_idx, pos_flags = _csr_with(pos, len(users), "case", "cand", POSITIVE_FLAGS)

    seen = (live.filter(pl.col("split").is_in(list(seen_splits))).select("user_id", "key").unique()
            .join(cases, on=["user_id", "key"], how="anti")
            .join(case_of, on="user_id").join(cand_index, on="key"))
    excl_ptr, excl_idx = _csr(seen, len(users), "case", "cand")

    live_train = train.filter(pl.col("domain") == "live")
    n_hist = dict(live_train.group_by("user_id").len().iter_rows())
    hist = np.array([n_hist.get(int(u), 0) for u in users], dtype=np.int64)
    # Exactly the lowest quantile of users by live history (ties by user id), not a threshold:
    # with many equal counts a threshold could put nearly everyone in the slice.
    cold = np.zeros(len(users), dtype=bool)
    cold[np.argsort(hist, kind="stable")[:int(np.ceil(cfg.klm3_cold_start_quantile * len(users)))]] = True
    tail = _tail_mask(live_train, candidates, cfg.head_fraction)
    return EvalSet("klm3-cdr", candidates, users, pos_ptr, pos_idx, cold, tail,
                   excl_ptr=excl_ptr, excl_idx=excl_idx, pos_flags=pos_flags)


def klm3_cut(ev: pl.DataFrame) -> datetime:
    """klm3-cdr's cut for what is fitted on the catalogue (authors' content means): its first live
    validation or test interaction. The split is per user, so no later time is before every
    request the fitted models are asked about."""
    return ev.filter(pl.col("split").is_in(["valid", "test"]) & (pl.col("domain") == "live")
                     )["event_timestamp"].min()


def author_topics(content: pl.DataFrame) -> pl.DataFrame:
    """(author_id, topic): a live author's category_l1 as item_content gives it to their rooms
    (int_authors_categorised: their most frequent short-video category path); null when unknown."""
    if "category_l1" not in content.columns:
        raise MissingMartError("item_content has no column category_l1 (the observable topic the "
                               "off_topic slice needs); rebuild the marts with `rgcd build`")
    return (content.filter(pl.col("domain") == "live").group_by("author_id")
            .agg(pl.col("category_l1").drop_nulls().first().alias("topic")))


def klm3_positive_flags(test: pl.DataFrame, train: pl.DataFrame, content: pl.DataFrame) -> pl.DataFrame:
    """klm3-cdr's test positives (user_id, key = author:<id>) with the POSITIVE_FLAGS columns.

    The split is per user and chronological, so "before the request" is the user's train split:
    not_linked - no train short video of this author; new_streamer - no live train interaction
    with this author by anyone; off_topic - the author's topic (`author_topics`) is known, the user
    has train short videos, and the topic is none of the user's most played train categories.
    """
    photos = content.filter(pl.col("domain") == "photo").select(
        pl.col("item_id").alias("key"), "author_id", pl.col("category_l1").alias("topic"))
    played = train.filter(pl.col("domain") == "photo").join(photos, on="key")
    linked = played.select("user_id", pl.format("author:{}", "author_id").alias("key"),
                           pl.lit(True).alias("linked")).unique()
    streamed = train.filter(pl.col("domain") == "live").select("key").unique().with_columns(
        pl.lit(True).alias("streamed"))
    counts = played.filter(pl.col("topic").is_not_null()).group_by("user_id", "topic").len()
    dominant = counts.filter(pl.col("len") == pl.col("len").max().over("user_id")).select(
        "user_id", "topic", pl.lit(True).alias("dominant"))
    has_topic = counts.select("user_id").unique().with_columns(pl.lit(True).alias("has_history"))
    topics = author_topics(content).select(pl.format("author:{}", "author_id").alias("key"), "topic")
    return (test.join(linked, on=["user_id", "key"], how="left")
            .join(streamed, on="key", how="left")
            .join(topics, on="key", how="left")
            .join(dominant, on=["user_id", "topic"], how="left")
            .join(has_topic, on="user_id", how="left")
            .select("user_id", "key",
                    pl.col("linked").is_null().alias("not_linked"),
                    pl.col("streamed").is_null().alias("new_streamer"),
                    (pl.col("topic").is_not_null() & pl.col("has_history").fill_null(False)
                     & pl.col("dominant").is_null()).alias("off_topic")))


def _ms(col: str) -> pl.Expr:
    return pl.col(col).dt.epoch("ms")




def load_live_room(marts: dict[str, pl.DataFrame], cfg: EvaluationConfig) -> Protocol:
    """The live-room protocol from eval_live_room, live_schedule, user_item_interactions, item_content."""
    ev = marts["eval_live_room"]
    test_rows = ev.filter(pl.col("split") == "test")
    if test_rows.is_empty():
        raise EmptyProtocol(f"eval_live_room has no test rows ({ev.height} rows in all): no live "
                            "session after the cut")
    cut: datetime = test_rows["request_timestamp"].min()
    catalog = ItemCatalog(marts["item_content"], cut=cut)

    train = interactions_before(marts["user_item_interactions"], catalog, cut)

    # Every room on air at some moment of the test period can be a candidate.
    sched = marts["live_schedule"].with_columns(
        _ms("start_timestamp").alias("start_ms"),
        pl.coalesce(_ms("end_timestamp"), pl.lit(np.iinfo(np.int64).max)).alias("end_ms"))
    t_min = int(test_rows.select(_ms("request_timestamp").min()).item())
    t_max = int(test_rows.select(_ms("request_timestamp").max()).item())
    sched = sched.filter((pl.col("start_ms") <= t_max) & (pl.col("end_ms") > t_min)).sort("item_id")
    candidates = sched["item_id"].to_list()
    cand_index = pl.DataFrame({"item_id": candidates, "cand": np.arange(len(candidates), dtype=np.int64)})

    events = (test_rows.group_by("user_id", "request_timestamp")
              .agg(pl.col("is_cold_start_user").any().alias("cold"))
              .sort("request_timestamp", "user_id")
              .with_row_index("case").with_columns(pl.col("case").cast(pl.Int64)))
    missing = [f"is_{f}" for f in POSITIVE_FLAGS if f"is_{f}" not in test_rows.columns]
    if missing:
        raise MissingMartError(f"eval_live_room has no column {', '.join(missing)} (the slices' flags); "
                               "rebuild the marts with `rgcd build`")
    flag_cols = [pl.col(f"is_{f}").alias(f) for f in POSITIVE_FLAGS]
    pos_all = test_rows.join(events, on=["user_id", "request_timestamp"])
    pos = pos_all.join(cand_index, on="item_id").select("case", "cand", *flag_cols).unique(["case", "cand"])
    notes = {"positives_without_schedule": pos_all.height - pos_all.join(cand_index, on="item_id").height}
    pos_ptr, pos_idx, pos_flags = _csr_with(pos, events.height, "case", "cand", POSITIVE_FLAGS)
    keep = np.diff(pos_ptr) > 0
    if not keep.all():  # an event whose entered room is not in the schedule cannot be ranked
        notes["events_dropped_no_scheduled_positive"] = int((~keep).sum())
        events = events.filter(pl.Series(keep)).drop("case").with_row_index("case").with_columns(
            pl.col("case").cast(pl.Int64))
        pos = pos_all.join(events.select("user_id", "request_timestamp", "case"),
                           on=["user_id", "request_timestamp"]).join(cand_index, on="item_id")
        pos_ptr, pos_idx, pos_flags = _csr_with(
            pos.select("case", "cand", *flag_cols).unique(["case", "cand"]), events.height, "case", "cand",
            POSITIVE_FLAGS)

    tail_rooms = set(test_rows.filter(pl.col("is_tail_item"))["item_id"].to_list())
    tail = np.array([c in tail_rooms for c in candidates], dtype=bool)
    evalset = EvalSet(
        "live-room", candidates, events["user_id"].to_numpy().astype(np.int64), pos_ptr, pos_idx,
        events["cold"].to_numpy().astype(bool), tail,
        request_ms=events.select(_ms("request_timestamp")).to_series().to_numpy().astype(np.int64),
        cand_start_ms=sched["start_ms"].to_numpy().astype(np.int64),
        cand_end_ms=sched["end_ms"].to_numpy().astype(np.int64), notes=notes, pos_flags=pos_flags)
    return Protocol("live-room", TrainData("live-room", train, catalog), evalset)


MART_NAMES = {
    "klm3-cdr": ("eval_klm3_cdr", "item_content"),
    "live-room": ("eval_live_room", "live_schedule", "user_item_interactions", "item_content"),
}
LOADERS: dict[str, Callable[[dict[str, pl.DataFrame], EvaluationConfig], Protocol]] = {
    "klm3-cdr": load_klm3_cdr, "live-room": load_live_room}


def load_protocols(ws: Workspace, cfg: EvaluationConfig, names: Sequence[str] = PROTOCOLS,
                   skipped: dict[str, str] | None = None) -> dict[str, Protocol]:
    """Read the marts each named protocol needs and build its train split and test cases.

    A protocol without test cases is left out; its reason goes into `skipped` when given.
    """
    cache: dict[str, pl.DataFrame] = {}
    out = {}
    for name in names:
        for mart in MART_NAMES[name]:
            if mart not in cache:
                cache[mart] = read_mart(ws, mart)
        try:
            out[name] = LOADERS[name](cache, cfg)
        except EmptyProtocol as why:
            if skipped is not None:
                skipped[name] = str(why)
    return out


# ---- ranking and scoring ---------------------------------------------------------------------------

def _kth_largest(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's k-th largest score, as a column. torch.topk, not np.partition: the same values,
    ~20x faster on a chunk of 1,024 cases x 20,000 candidates (np.partition of the negated matrix
    was most of evaluate's ranking time; docs/journal/2026-12-07.md, session 12)."""
    import torch

    top = torch.topk(torch.from_numpy(scores), k, dim=1, sorted=False).values
    return top.min(dim=1, keepdim=True).values.numpy()


def _top_columns(key: np.ndarray, k: int) -> np.ndarray:
    """The columns of each row's k largest keys (unordered), keys distinct within a row."""
    import torch

    return torch.topk(torch.from_numpy(key), k, dim=1, sorted=False).indices.numpy()


def rank_top(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the k best columns per row, best first; equal scores in a random (seeded) order.

    Returns (n_rows, min(k, n_cols)) indices into the columns of `scores`. Ties are broken by an
    independent random key per cell, so a model that cannot tell items apart ranks them at
    random for each case, never by their position in the candidate list.
    """
    if np.isnan(scores).any():
        raise ValueError("a model returned NaN scores; every score must be a number or -inf")
    n = scores.shape[1]
    k_eff = min(k, n)
    tie = rng.random(scores.shape)
    if k_eff < n:
        kth = _kth_largest(scores, k_eff)
        top = scores >= kth
        part = np.empty((scores.shape[0], k_eff), dtype=np.int64)
        # Most rows have exactly k scores at or above their k-th: those k are the top, whatever
        # the tie keys. Only rows with ties across the k-th place need the keys to choose.
        exact = top.sum(axis=1) == k_eff
        if exact.all():
            part = np.nonzero(top)[1].reshape(-1, k_eff)
        elif exact.any():
            part[exact] = np.nonzero(top[exact])[1].reshape(-1, k_eff)
        tied = ~exact
        if tied.any():
            above, at = scores[tied] > kth[tied], scores[tied] == kth[tied]
            # Everything above the k-th score is in; among scores equal to it, the highest tie keys.
            key = np.where(above, 2.0, np.where(at, tie[tied], -1.0))
            part[tied] = _top_columns(key, k_eff)
    else:
        part = np.tile(np.arange(n), (scores.shape[0], 1))
    order = np.lexsort((np.take_along_axis(tie, part, axis=1),
                        -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _dense_entries(ptr: np.ndarray, idx: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                   n_all: int) -> np.ndarray:
    """Int matrix (len(rows), len(cols)): at a CSR entry of the given rows that falls in `cols`
    (column indices out of `n_all`), the entry's position in `idx`; -1 elsewhere."""
    local = np.full(n_all, -1, dtype=np.int64)
    local[cols] = np.arange(len(cols))
    out = np.full((len(rows), len(cols)), -1, dtype=np.int32)  # a chunk x the rooms on air: keep it small
    for r, case in enumerate(rows):
        entries = np.arange(ptr[case], ptr[case + 1])
        hit = local[idx[entries]]
        out[r, hit[hit >= 0]] = entries[hit >= 0]
    return out


def _dense_rows(ptr: np.ndarray, idx: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                n_all: int) -> np.ndarray:
    """Boolean matrix (len(rows), len(cols)) with True at the CSR entries of the given rows that
    fall in `cols` (column indices out of `n_all`)."""
    return _dense_entries(ptr, idx, rows, cols, n_all) >= 0


def slice_positives(evalset: EvalSet) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Per slice: (which cases may enter it, which positives count in it (aligned with
    `pos_idx`; None: all of them)). A case enters a slice only with at least one counted positive."""
    n_pos = len(evalset.pos_idx)
    every = np.ones(evalset.n_cases, dtype=bool)
    flag = {name: evalset.pos_flags.get(name, np.zeros(n_pos, dtype=bool)) for name in POSITIVE_FLAGS}
    return {"all": (every, None), "cold_start": (evalset.cold_start, None),
            "tail": (every, evalset.tail_item[evalset.pos_idx]),
            "not_linked": (every, flag["not_linked"]),
            "cold_start_not_linked": (evalset.cold_start, flag["not_linked"]),
            "new_streamer": (every, flag["new_streamer"]), "off_topic": (every, flag["off_topic"])}


@dataclass
class CaseMetrics:
    """One model's ranking of one protocol's test cases, per slice: the mean of every metric, the
    number of cases, and the per-case values of PER_CASE_METRICS (in case order, so two models'
    arrays on the same slice pair up case by case)."""

    means: dict[str, dict[str, float]]
    counts: dict[str, int]
    per_case: dict[str, dict[str, np.ndarray]]


def evaluate_cases(model: Recommender, evalset: EvalSet, ks: Sequence[int], seed: int,
                   chunk: int = 1024) -> CaseMetrics:
    """Rank every test case's candidates with `model`; metrics per slice (see `CaseMetrics`)."""
    k_max = max(ks)
    rng = np.random.default_rng(seed + 7919)
    n_cand = len(evalset.candidates)
    per_slice: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SLICES}
    counts = dict.fromkeys(SLICES, 0)
    slices = slice_positives(evalset)
    case_of_pos = np.repeat(np.arange(evalset.n_cases), np.diff(evalset.pos_ptr))
    n_counted = {s: np.bincount(case_of_pos, weights=None if counted is None else counted,
                                minlength=evalset.n_cases).astype(np.int64)
                 for s, (_, counted) in slices.items()}
    for start in range(0, evalset.n_cases, chunk):
        rows = np.arange(start, min(start + chunk, evalset.n_cases))
        cols = np.arange(n_cand)
        on_air = None
        if evalset.request_ms is not None:
            t = evalset.request_ms[rows]
            # Cases are sorted by request time, so a chunk spans a short time: only the rooms on
            # air at some moment of that span are scored (a few thousand of the whole schedule).
            cols = np.flatnonzero((evalset.cand_start_ms <= t.max()) & (evalset.cand_end_ms > t.min()))
            t = t[:, None]
            on_air = (evalset.cand_start_ms[cols][None, :] <= t) & (t < evalset.cand_end_ms[cols][None, :])
        users = evalset.users[rows]
        items = [evalset.candidates[c] for c in cols]
        if evalset.request_ms is not None and hasattr(model, "score_at"):
            # a model that knows the request time (the oracle) scores case by case
            scores = np.asarray(model.score_at(users, items, evalset.request_ms[rows]), dtype=np.float64)
        else:
            uniq, inverse = np.unique(users, return_inverse=True)
            scores = np.asarray(model.score(uniq, items), dtype=np.float64)
            if scores.shape != (len(uniq), len(cols)):
                raise ValueError(f"{model.name}.score returned {scores.shape}, "
                                 f"expected {(len(uniq), len(cols))}")
            scores = scores[inverse]
        if evalset.excl_ptr is not None:
            scores[_dense_rows(evalset.excl_ptr, evalset.excl_idx, rows, cols, n_cand)] = -np.inf
        if on_air is not None:
            scores[~on_air] = -np.inf
        top_local = rank_top(scores, k_max, rng)
        valid = np.isfinite(np.take_along_axis(scores, top_local, axis=1))
        # which positive (its entry in pos_idx) each ranked item is, -1 for a non-positive
        entry = np.take_along_axis(_dense_entries(evalset.pos_ptr, evalset.pos_idx, rows, cols, n_cand),
                                   top_local, axis=1)
        entry[~valid] = -1
        if entry.shape[1] < k_max:  # fewer candidates than K: the missing ranks are misses
            entry = np.hstack([entry, np.full((len(rows), k_max - entry.shape[1]), -1, dtype=entry.dtype)])
        hits = entry >= 0
        for name, (in_slice, counted) in slices.items():
            n = n_counted[name][rows]
            sel = in_slice[rows] & (n > 0)
            if not sel.any():
                continue
            h = hits if counted is None else hits & counted[np.maximum(entry, 0)]
            per_slice[name].append(batch_metrics(h[sel], n[sel], ks))
            counts[name] += int(sel.sum())
    means: dict[str, dict[str, float]] = {}
    per_case: dict[str, dict[str, np.ndarray]] = {}
    for name in SLICES:
        parts = per_slice[name]
        values = {m: np.concatenate([p[m] for p in parts]) for m in parts[0]} if parts else {}
        means[name] = {m: float(v.mean()) for m, v in values.items()}
        per_case[name] = {m: values[m].astype(np.float32) for m in PER_CASE_METRICS if m in values}
    return CaseMetrics(means, counts, per_case)


def evaluate_model(model: Recommender, evalset: EvalSet, ks: Sequence[int], seed: int,
                   chunk: int = 1024) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Rank every test case's candidates with `model`; mean metrics per slice and case counts."""
    out = evaluate_cases(model, evalset, ks, seed, chunk)
    return out.means, out.counts




def fit_and_evaluate(model: Recommender, protocol: Protocol, ks: Sequence[int], seed: int,
                     threads: int = 1, fit: bool = True) -> ModelRun:
    """Fit on the protocol's training split (unless `fit` is False: fitted already, for a model whose
    fit reads no seed), then rank its test cases."""
    t0 = time.perf_counter()
    with torch_threads(threads):
        if fit:
            model.fit(protocol.train, seed)
        t1 = time.perf_counter()
        out = evaluate_cases(model, protocol.test, ks, seed)
        valid = evaluate_cases(model, protocol.valid, ks, seed).means if protocol.valid is not None else {}
    return ModelRun(protocol.name, model.name, seed, out.means, out.counts, t1 - t0 if fit else 0.0,
                    time.perf_counter() - t1, out.per_case, valid)


def full_method_ready(ws: Workspace) -> bool:
    """Whether the student's chorus states exist, which the full method (stage 2) is fitted on."""
    return (ws.student / "chorus_states.safetensors").exists()


def _model_names(ws: Workspace, cfg: EvaluationConfig, models: Sequence[str] | None,
                 settings: Settings | None) -> tuple[list[str], list[str]]:
    """(baselines, full method) to evaluate; errors name what is unknown or missing."""
    from rgcd.config import FULL_METHOD
    from rgcd.training.baselines import MODELS, UnknownModelError

    names = list(models if models is not None else cfg.models)
    unknown = [n for n in names if n not in MODELS and n not in FULL_METHOD]
    if unknown:
        raise UnknownModelError(f"unknown model(s) {', '.join(unknown)}; known: "
                                f"{', '.join([*MODELS, *FULL_METHOD])}")
    full = [n for n in names if n in FULL_METHOD]
    if models is None and settings is not None and full_method_ready(ws):
        full = list(cfg.full_method)
    if full and settings is None:
        raise UnknownModelError(f"{', '.join(full)} need the workspace's settings (stage 2 is fitted on "
                                "demand): call run_evaluation(..., settings=...)")
    if full and not full_method_ready(ws):
        raise MissingMartError(f"{', '.join(full)} need the student's chorus states "
                               f"({ws.models / 'student'}): run `rgcd distill` first")
    return [n for n in names if n in MODELS], full


def model_factories(ws: Workspace, cfg: EvaluationConfig, settings: Settings | None,
                    baselines: Sequence[str], full: Sequence[str],
                    with_oracle: bool) -> dict[str, Callable[[], Recommender]]:
    """A factory per model name, in report order; the oracle last, on worlds that carry the truth."""
    from rgcd.training.baselines import build_model
    from rgcd.training.full_method_fits import full_method_factories

    factories: dict[str, Callable[[], Recommender]] = {n: (lambda n=n: build_model(n, cfg))
                                                       for n in baselines}
    if full:
        factories.update(full_method_factories(ws, settings, full))
    truth = load_latent(ws) if with_oracle else None
    if truth is not None:  # only a synthetic world has it: an upper bound, not a model
        from rgcd.training.oracle import NAME, Oracle

        factories[NAME] = lambda: Oracle(truth)
    return factories


Vectors = tuple[list[str], np.ndarray]


def run_seeds(name: str, factory: Callable[[], Recommender], protocol: Protocol, ks: Sequence[int],
              seeds: Sequence[int], threads: int) -> tuple[list[ModelRun], Vectors | None]:
    """One model on one protocol for every seed; the first seed's item vectors when they cover
    both domains (worth a projection plot)."""
    runs, vectors, model = [], None, None
    for seed in seeds:
        # a model whose fit reads no seed is fitted once; each seed still ranks with its own tie-breaks
        refit = model is None or not getattr(model, "seed_independent", False)
        model = factory() if refit else model
        run = fit_and_evaluate(model, protocol, ks, seed, threads, fit=refit)
        run.model = name
        runs.append(run)
        if vectors is None and hasattr(model, "item_vectors"):
            ids, vecs = model.item_vectors()
            if any(i.startswith("photo:") for i in ids):
                vectors = (ids, vecs)
    return runs, vectors


# ---- worker processes: a job is one or more models, each on every protocol for every seed, so what a
# model caches (the stage-2 fits on disk, content_text's encoded texts in memory) is made by one
# worker only ----------------------------------------------------------------------------------------

_WORKER: dict = {}


def _worker_setup(root: str, cfg_json: str, settings_json: str | None, baselines: list[str],
                  full: list[str], with_oracle: bool) -> None:
    import contextlib

    from rgcd.terminal import clean_terminal

    _WORKER["stack"] = stack = contextlib.ExitStack()
    stack.enter_context(clean_terminal())
    ws = Workspace(root)
    cfg = EvaluationConfig.model_validate_json(cfg_json)
    settings = Settings.model_validate_json(settings_json) if settings_json else None
    _WORKER.update(ws=ws, cfg=cfg, protocols={},
                   factories=model_factories(ws, cfg, settings, baselines, full, with_oracle))


def _worker_job(models: list[tuple[str, list[str]]], ks: list[int], seeds: list[int]) -> dict:
    """Models one after another, each on every protocol it lists that has test cases:
    {"runs": {model: {protocol: (runs, vectors)}}, "notes": {protocol: notes},
    "skipped": {protocol: why}}."""
    loaded, skipped = _WORKER["protocols"], _WORKER.setdefault("skipped", {})
    wanted = list(dict.fromkeys(p for _, protocols in models for p in protocols))
    missing = [p for p in wanted if p not in loaded and p not in skipped]
    if missing:  # in one call, so the protocols share the marts they both read (item_content)
        loaded.update(load_protocols(_WORKER["ws"], _WORKER["cfg"], missing, skipped))
    runs: dict[str, dict] = {}
    notes = {}
    for name, protocols in models:
        runs[name] = {}
        for p_name in protocols:
            if p_name in loaded:
                runs[name][p_name] = run_seeds(name, _WORKER["factories"][name], loaded[p_name], ks, seeds,
                                               _WORKER["cfg"].torch_threads)
                notes[p_name] = loaded[p_name].test.notes
        _release_job_memory()
    return {"runs": runs, "notes": notes, "skipped": dict(skipped)}


def _release_job_memory() -> None:
    """After each model a worker keeps its protocols and nothing of that model: no other model
    reads its caches, and glibc hands the freed heap back to the system.
    At the demo size the two workers peaked at 2.3 GiB each without this (process tree 4.8-5.2
    GiB), at 1.7-2.25 GiB with it (tree 3.6-4.35 GiB RSS over three runs; docs/journal/2026-12-07.md)."""
    import gc

    from rgcd.memory import trim_heap
    from rgcd.training import text_encoder
    from rgcd.training.full_method_fits import forget_stage2_vectors
    from rgcd.training.recommender import forget_indexed_pairs

    text_encoder.release()
    forget_indexed_pairs()
    forget_stage2_vectors()
    gc.collect()
    trim_heap()


# Relative cost of a model's job at the demo size (measured: evaluate's timing_s at the demo size in
# session 12, after ranking by torch.topk and seed-independent models fitted once,
# docs/journal/2026-12-07.md; fit + rank seconds of all seeds on both protocols, content_text in
# bfloat16; uniembed = 2.2), so the largest jobs start first and the two workers finish together; an
# unlisted model counts as a two-tower one.
_RELATIVE_COST = {"content_text": 4.8, "uniembed": 2.2, "emcdr": 1.9, "oracle": 1.0, "bpr_mf": 0.6,
                  "creator_link": 0.5, "creator_link_popularity": 0.5, "content_mm": 0.3, "popularity": 0.25}


def _jobs(models: list[str], full: list[str],
          protocols_of: Callable[[str], list[str]]) -> list[list[tuple[str, list[str]]]]:
    """The workers' jobs, in submission order: the full method and its ablations as one job (so one
    worker alone imports Feast and reads stage 2's inputs: ~0.3 GiB a worker keeps after it), then
    one job per other model, largest first. At the demo size the first job costs about what all the
    others do together, so one worker takes it and the other the baselines."""
    group = [(m, protocols_of(m)) for m in models if m in full and protocols_of(m)]
    rest = sorted((m for m in models if m not in full and protocols_of(m)),
                  key=lambda m: -_RELATIVE_COST.get(m, 1.8))
    return ([group] if group else []) + [[(m, protocols_of(m))] for m in rest]


def run_evaluation(ws: Workspace, cfg: EvaluationConfig, seeds: Sequence[int] | None = None,
                   run: str | None = None, models: Sequence[str] | None = None,
                   extra: dict[str, Callable[[], Recommender]] | None = None,
                   progress: bool = True, settings: Settings | None = None,
                   with_oracle: bool = True) -> tuple[Path, dict]:
    """Fit and evaluate every model on every protocol for every seed; write the report.

    `models` are names from `rgcd.training.baselines.MODELS` or of the full method (default: the
    configuration's baselines, then `full_method` when `settings` are given and the student's
    chorus states exist); `extra` adds models by factory (run in this process). The full method is
    not a baseline, so the "strongest baseline" sentence leaves it out. On a world that carries its
    latent truth (the demo world) the `oracle` row is added: an upper bound, never a model
    (training/oracle.py). With `cfg.workers` > 1 (and at least `cfg.parallel_from_cases` test
    rows), one job per model (every protocol, every seed) runs in that many worker processes, which
    read the marts themselves (this process holds none meanwhile); the numbers are the same as in
    one process.
    Returns (report folder, metrics.json document).
    """
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rgcd.training.report import write_report

    started = time.perf_counter()
    seeds = list(seeds if seeds is not None else cfg.seeds)
    baselines, full = _model_names(ws, cfg, models, settings)
    from rgcd.training.oracle import NAME as ORACLE
    from rgcd.transforms.latent import has_latent

    model_names = [*baselines, *full, *([ORACLE] if with_oracle and has_latent(ws) else [])]
    local = dict(extra or {})
    run = run or datetime.now().astimezone().strftime("%Y%m%dT%H%M%S")
    skipped: dict[str, str] = {}
    notes: dict[str, dict[str, int]] = {}
    result = EvaluationResult(run=run, seeds=seeds, ks=sorted(cfg.ks), runs=[], baselines=set(baselines),
                              skipped=skipped, bootstrap_samples=cfg.bootstrap_samples)
    done: dict[tuple[str, str], tuple[list[ModelRun], Vectors | None]] = {}
    order = [*model_names, *local]

    def protocols_of(model: str) -> list[str]:
        if model in full and model != full[0]:  # an ablation
            return [p for p in cfg.protocols if p in cfg.ablation_protocols]
        return list(cfg.protocols)

    # In parallel the workers read the marts: this process holds none of them while they run.
    parallel = cfg.workers > 1 and count_test_rows(ws, cfg.protocols) >= cfg.parallel_from_cases
    protocols: dict[str, Protocol] = {}
    factories: dict[str, Callable[[], Recommender]] = {}
    if not parallel or local:
        # (in parallel the workers build the models: this process imports none of them)
        factories = {} if parallel else model_factories(ws, cfg, settings, baselines, full, with_oracle)
        protocols = load_protocols(ws, cfg, cfg.protocols, skipped)
        if not protocols:
            raise EvaluationDataError("no protocol has test cases: " + "; ".join(skipped.values()))
        notes = {p: pr.test.notes for p, pr in protocols.items()}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not progress, transient=True) as bar:
        task = bar.add_task("evaluate", total=sum(len(protocols_of(m)) for m in order) * len(seeds))

        def finished(name: str, out: dict[str, tuple[list[ModelRun], Vectors | None]]) -> None:
            for p_name, runs in out.items():
                done[(name, p_name)] = runs
            bar.update(task, advance=len(out) * len(seeds), description=f"{name} done")

        if parallel:
            jobs = _jobs(model_names, full, protocols_of)
            for job in _run_in_workers(ws, cfg, settings, baselines, full, with_oracle, jobs, result.ks,
                                       seeds):
                for name, runs in job["runs"].items():
                    finished(name, runs)
                notes.update(job["notes"])
                skipped.update(job["skipped"])
        for m_name in order:
            for p_name, protocol in protocols.items():
                if (m_name, p_name) not in done and p_name in protocols_of(m_name):
                    bar.update(task, description=f"{p_name} {m_name}")
                    factory = local.get(m_name) or factories[m_name]
                    finished(m_name, {p_name: run_seeds(m_name, factory, protocol, result.ks, seeds,
                                                        cfg.torch_threads)})
    names = [p for p in cfg.protocols if any((m, p) in done for m in order)]
    if not names:
        raise EvaluationDataError("no protocol has test cases: " + "; ".join(skipped.values()))
    for seed_index in range(len(seeds)):
        for p_name in names:
            for m_name in (m for m in order if (m, p_name) in done):
                r = done[(m_name, p_name)][0][seed_index]
                result.runs.append(r)
                result.cases.setdefault(p_name, r.counts)
    for m_name in order:
        first = next((done[(m_name, p)] for p in names if (m_name, p) in done), ([], None))
        vectors = first[1]
        if vectors is not None:
            result.item_vectors[m_name] = vectors
    result.notes = {p: n for p, n in notes.items() if n}
    result.wall_s = time.perf_counter() - started
    out = write_report(result, ws.reports)
    return out, json.loads((out / "metrics.json").read_text())


def _run_in_workers(ws: Workspace, cfg: EvaluationConfig, settings: Settings | None, baselines: list[str],
                    full: list[str], with_oracle: bool, jobs: list[list[tuple[str, list[str]]]],
                    ks: list[int], seeds: list[int]) -> Iterator[dict]:
    """Run `jobs` (each a list of (model, protocols), submitted in this order) in `cfg.workers`
    worker processes (`rgcd.workers`); yields each finished job (`_worker_job`'s result)."""
    from rgcd.workers import results_as_completed

    init = (str(ws.root), cfg.model_dump_json(), settings.model_dump_json() if settings else None,
            baselines, full, with_oracle)
    # Workers live for the whole evaluation: a fresh process per job (max_tasks_per_child=1)
    # bounded each worker by one job's heap (sum 3.8 instead of 5.2 GiB at the demo size) but
    # doubled the stage's time (imports, Feast and torch set-up per job: 551 s instead of 276 s).
    yield from results_as_completed(_worker_job, [(job, ks, seeds) for job in jobs], cfg.workers,
                                    _worker_setup, init)


def count_test_rows(ws: Workspace, names: Sequence[str]) -> int:
    """Test rows of the named protocols' eval marts: at least their test cases, counted without
    reading the marts (parquet statistics and one column)."""
    total = 0
    for name in names:
        path = Path(ws.marts) / f"{MART_NAMES[name][0]}.parquet"
        if path.exists():
            total += pl.scan_parquet(path).filter(pl.col("split") == "test").select(pl.len()).collect().item()
    return total
