"""The seam between stage 1 and the data below it: behaviour pairs and item content, from Feast.

`read_stage1_frames` is the one place that knows. It builds an entity frame of ids only (the
pair_id / item_id values of the marts Feast's views read) at ONE request time, and takes every
feature value from the feature store with `rgcd.featurestore.store.frame` (point in time, returned as polars).

The request time is the latest event_timestamp in the two marts, not the wall clock: a frame then
depends only on the data (a rerun next week reads the same values, so the teacher's answer cache
still hits), and it sees every row a request "now" would see, since no row lies after it.

Feast's get_historical_features answers, through the configured offline store
(`features.offline_store`: the ASOF plugin by default, rgcd/featurestore/offline_store.py; the
stock DuckDB store one setting away, same frames; tests/training/test_frames.py pins that). At demo
size (1.34M pairs, 80.7k items) the stock store took 4.4 s and 2.0 GB peak against 1.8 s / 0.8 GB
for reading the parquet directly (benchmarks/results/stage1_frames.json; docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from rgcd.config import Settings, Workspace
from rgcd.errors import RgcdError

PAIR_FEATURES = (
    "pair_type",
    "photo_item_id",
    "target_id",
    "photo_id",
    "live_id",
    "author_id",
    "co_count",
    "distinct_users",
    "strength",
    "first_seen",
    "last_seen",
)
ITEM_FEATURES = (
    "domain",
    "source_id",
    "author_id",
    "title",
    "body_text",
    "category_l1",
    "category_l2",
    "category_l3",
    "category_l4",
    "duration_ms",
    "start_timestamp",
    "end_timestamp",
    "mm_embedding",
    "cover_path",
)
# (Feast view = the mart it reads, its join key, the features stage 1 reads: the view's part of the
# feature service named last, feature_repo/services.py)
PAIRS = ("behaviour_pairs", "pair_id", PAIR_FEATURES, "pair_training")
ITEMS = ("item_content", "item_id", ITEM_FEATURES, "item_training")


class MissingInput(RgcdError, FileNotFoundError):
    """A table a stage needs is not there; the message says which command writes it."""

    exit_code = 2


# The order stage 1 takes pairs in, strongest first: (column, descending). Ties: more users, then id.
PAIR_RANKING = (("strength", True), ("distinct_users", True), ("pair_id", False))


@dataclass(frozen=True)
class Stage1Frames:
    """What stage 1 reads, one row per id, as of `request_time`.

    pairs: pair_id + PAIR_FEATURES + event_timestamp (= last_seen, as in the mart);
    items: item_id + ITEM_FEATURES (both domains; a live room's start is start_timestamp) +
    first_appearance (the event time of the item's row in the store: a photo's first play, a
    room's start), read with the ids, so what is written about an item can be stamped with it.
    `unanswered` counts ids of the marts for which the store had no row at request_time.
    `pairs_ranked` is how many pairs of the mart qualify (strength >= the floor asked for);
    `pairs_complete` is False when `pairs` holds only the strongest of them
    (`read_stage1_frames(strongest_pairs=...)`).
    """

    pairs: pl.DataFrame
    items: pl.DataFrame
    request_time: datetime
    unanswered: int = 0
    pairs_ranked: int | None = None
    pairs_complete: bool = True


def _mart(ws: Workspace, view: str) -> Path:
    path = ws.marts / f"{view}.parquet"
    if not path.exists():
        raise MissingInput(f"{path} is missing: run `rgcd build` (dbt) first; stage 1 reads the {view} mart")
    return path


def checked_store(ws: Workspace, settings: Settings, views: list[str]):
    """The workspace's feature store, checked to define `views` over this workspace's marts."""
    from rgcd.featurestore.store import FeatureStoreError, feature_store, source_path

    apply_hint = f"run `rgcd -w {ws.root} features apply`"
    try:
        store = feature_store(ws, settings)
        by_name = {v.name: v for v in store.list_feature_views()}
    except FeatureStoreError as err:
        raise MissingInput(f"{err} (stage 1 reads its inputs from Feast)") from err
    for name in views:
        if name not in by_name:
            raise MissingInput(f"the Feast registry in {ws.feast} has no view {name!r}: {apply_hint}")
        # A registry copied along with a workspace still points at the old workspace's marts.
        got, want = source_path(by_name[name]).resolve(), (ws.marts / f"{name}.parquet").resolve()
        if got != want:
            raise MissingInput(f"Feast view {name!r} reads {got}, not {want}: {apply_hint}")
    return store


def _request_time(paths: list[Path]) -> datetime:
    latest = [pl.scan_parquet(p).select(pl.col("event_timestamp").max()).collect().item() for p in paths]
    latest = [t for t in latest if t is not None]
    if not latest:
        raise MissingInput(f"{', '.join(map(str, paths))} hold no rows: rebuild the marts with `rgcd build`")
    return max(latest)


def _read_view(store, path: Path, spec: tuple[str, str, tuple[str, ...], str], at: datetime,
               ids: pl.DataFrame | None = None) -> tuple[pl.DataFrame, int]:
    """One view's features for `ids` (default: every id of its mart) at `at`; (frame, ids without
    an answer)."""
    from rgcd.featurestore.store import frame

    view, key, features, service = spec
    # Ids only: the entity frame an engineer would build; the values come from the store.
    if ids is None:
        ids = pl.scan_parquet(path).select(key).unique().sort(key).collect()
    entities = ids.with_columns(pl.lit(at).dt.convert_time_zone("UTC").alias("event_timestamp"))
    got = frame(store, entities, service=service, views=[view])
    got = got.rename({f"{view}__{f}": f for f in features}).drop("event_timestamp")
    # Every feature null = the store has no row for the id at `at` (e.g. a null event_timestamp).
    answered = got.filter(pl.any_horizontal(pl.col(f).is_not_null() for f in features))
    return answered, got.height - answered.height


# Every item of the creators behind the `chosen` pairs (pair_id, photo_item_id, author_id): the
# pairs' live authors and their short videos' creators. Parameter: the item_content parquet.
_CREATOR_ITEMS = """
    WITH items AS (SELECT DISTINCT item_id, author_id FROM read_parquet(?)),
    creators AS (
        SELECT author_id FROM chosen
        UNION SELECT items.author_id FROM chosen JOIN items ON items.item_id = chosen.photo_item_id)
    SELECT DISTINCT item_id FROM items WHERE author_id IN (SELECT author_id FROM creators)
    ORDER BY item_id"""


def _strongest_pair_ids(ws: Workspace, settings: Settings, pairs_path: Path, items_path: Path,
                        limit: int, min_strength: float) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The `limit` strongest pair ids (PAIR_RANKING, strength >= min_strength), every item id of
    the creators behind them, and how many pairs qualify; ranked by DuckDB under the run's memory
    limit, so the mart never comes whole into Python.

    The items are every item of the pairs' photo creators and live authors: what stage 1 shows
    of a pair (both items, the author's rooms, the creators' counts) then needs nothing else.
    """
    from rgcd.memory import duckdb_connect

    order = ", ".join(f"{col} {'DESC' if desc else 'ASC'}" for col, desc in PAIR_RANKING)
    con = duckdb_connect(ws, settings)
    try:
        con.execute(f"""
            CREATE TEMP TABLE chosen AS
            SELECT pair_id, photo_item_id, author_id FROM read_parquet(?)
            WHERE strength >= ? ORDER BY {order} LIMIT ?""",
                    [str(pairs_path), min_strength, limit]).fetchall()
        ranked = con.execute("SELECT count(*) FROM read_parquet(?) WHERE strength >= ?",
                             [str(pairs_path), min_strength]).fetchall()[0][0]
        pair_ids = pl.from_arrow(con.sql("SELECT pair_id FROM chosen ORDER BY pair_id").to_arrow_table())
        item_ids = pl.from_arrow(con.sql(_CREATOR_ITEMS, params=[str(items_path)]).to_arrow_table())
    finally:
        con.close()
    return pair_ids, item_ids, int(ranked)


def stage1_cut(ws: Workspace) -> datetime | None:
    """The time before which stage 1 (teacher, student) and stage 2 may learn: the live-room
    protocol's cut, its first test request (the `eval_live_room` mart); None where the workspace
    has no such mart (production: everything up to now is training data).

    Stage 1 is fitted once for both protocols; klm3-cdr splits per user, so its earliest test
    interaction lies days before this cut (see the README, Evaluation)."""
    path = ws.marts / "eval_live_room.parquet"
    if not path.exists():
        return None
    return (pl.scan_parquet(path).filter(pl.col("split") == "test")
            .select(pl.col("request_timestamp").min()).collect().item())


def _creator_items(ws: Workspace, settings: Settings, items_path: Path, chosen: pl.DataFrame) -> pl.DataFrame:
    """Every item id of the creators behind `chosen` pairs (pair_id, photo_item_id, author_id): the
    pairs' live authors and their short videos' creators."""
    from rgcd.memory import duckdb_connect

    con = duckdb_connect(ws, settings)
    try:
        con.register("chosen", chosen.select("pair_id", "photo_item_id", "author_id").to_arrow())
        return pl.from_arrow(con.sql(_CREATOR_ITEMS, params=[str(items_path)]).to_arrow_table())
    finally:
        con.close()


def items_mart(ws: Workspace) -> Path:
    """The item_content mart's file (MissingInput before `rgcd build`)."""
    return _mart(ws, ITEMS[0])


def item_first_appearance(items_path: Path) -> pl.DataFrame:
    """item_id and first_appearance (the earliest event time of its rows) of every item of the
    item_content mart: two columns, read by polars from the mart."""
    return (pl.scan_parquet(items_path).group_by("item_id")
            .agg(pl.col("event_timestamp").min().alias("first_appearance")).collect())


def read_items_in_windows(ws: Workspace, settings: Settings, order: pl.DataFrame,
                          window: int) -> Iterator[tuple[pl.DataFrame, int]]:
    """Item content through Feast for the ids of `order` (item_id, first_appearance), `window` ids
    at a time, point in time at the mart's latest event (what `read_stage1_frames(pairs=False)`
    reads, in `order`'s order instead of by id): per window, (the answered rows: item_id +
    ITEM_FEATURES + first_appearance; ids the store did not answer). Memory follows the window,
    not the catalogue."""
    path = items_mart(ws)
    store = checked_store(ws, settings, [ITEMS[0]])
    at = _request_time([path])
    for start in range(0, order.height, window):
        ids = order.slice(start, window)
        got, missed = _read_view(store, path, ITEMS, at, ids.select("item_id"))
        # rows keep the entities' order (featurestore.frame); the join keeps the left frame's
        yield ids.join(got, on="item_id", how="inner", maintain_order="left").select(
            got.columns + ["first_appearance"]), missed


def read_stage1_frames(ws: Workspace, settings: Settings, *, pairs: bool = True,
                       strongest_pairs: int | None = None, min_strength: float = 0.0,
                       cut: datetime | None = None, pair_ids: pl.DataFrame | None = None) -> Stage1Frames:
    """Behaviour pairs and item content through Feast, point in time at the marts' latest event,
    or just before `cut` when one is given (nothing at or after it is read).

    `pairs=False` reads item content only (stage 1b) and leaves `pairs` empty.
    `strongest_pairs=N` reads only the N strongest pairs with strength >= `min_strength` (in
    PAIR_RANKING order) and only the items of their creators, so memory follows N, not the mart;
    `pairs_ranked` then says how many qualified. `pair_ids` (pair_id, photo_item_id, author_id)
    reads exactly those pairs and the items of their creators.
    """
    from datetime import timedelta

    specs = [PAIRS, ITEMS] if pairs else [ITEMS]
    paths = [_mart(ws, spec[0]) for spec in specs]
    store = checked_store(ws, settings, [spec[0] for spec in specs])
    at = _request_time(paths)
    if cut is not None:
        at = min(at, cut - timedelta(microseconds=1))
    ids: dict[str, pl.DataFrame | None] = {spec[0]: None for spec in specs}
    ranked = None
    if pairs and pair_ids is not None:
        ids["behaviour_pairs"] = pair_ids.select("pair_id").sort("pair_id")
        ids["item_content"] = _creator_items(ws, settings, paths[1], pair_ids)
    elif pairs and strongest_pairs is not None:
        ids["behaviour_pairs"], ids["item_content"], ranked = _strongest_pair_ids(
            ws, settings, paths[0], paths[1], strongest_pairs, min_strength)
    read = {spec[0]: _read_view(store, path, spec, at, ids[spec[0]])
            for spec, path in zip(specs, paths, strict=True)}
    items, unanswered = read["item_content"]
    first = item_first_appearance(paths[specs.index(ITEMS)])
    # Sorted by id: what is read never depends on the order the store answers in.
    items = items.join(first, on="item_id", how="left").sort("item_id")
    if pairs:
        pair_frame, missed = read["behaviour_pairs"]
        pair_frame = pair_frame.with_columns(pl.col("last_seen").alias("event_timestamp")).sort("pair_id")
        unanswered += missed
    else:
        pair_frame = pl.DataFrame(schema={"pair_id": pl.String, **{f: pl.Null for f in PAIR_FEATURES}})
    return Stage1Frames(pairs=pair_frame, items=items, request_time=at, unanswered=unanswered,
                        pairs_ranked=ranked,
                        pairs_complete=ranked is None or (strongest_pairs or 0) >= ranked)
