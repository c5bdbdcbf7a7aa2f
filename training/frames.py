"""The seam between stage 1 and the data below it: behaviour pairs and item content, from Feast.

`read_stage1_frames` is the one place that knows. It builds an entity frame of ids only (the
pair_id / item_id values of the marts Feast's views read) at ONE request time, and takes every
feature value from the feature store with `rgcd.featurestore.store.frame` (point in time, returned as polars).

The request time is the latest event_timestamp in the two marts, not the wall clock: a frame then
depends only on the data (a rerun next week reads the same values, so the teacher's answer cache
still hits), and it sees every row a request "now" would see, since no row lies after it.

The engine is Feast's own retrieval (`engine="feast"`, the DuckDB offline store). At demo size
(1.34M pairs, 80.7k items) it took 4.4 s and 2.0 GB peak, against 3.4 s / 1.7 GB for the `asof`
engine (DuckDB ASOF JOINs over the same registry definitions, same frames; tests/training/
test_frames.py pins that) and 1.8 s / 0.8 GB for reading the parquet directly
(benchmarks/stage1_frames.py; README, Stage 1): affordable, so Feast's is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from rgcd.config import Settings, Workspace

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
)
# (Feast view = the mart it reads, its join key, the features stage 1 reads)
PAIRS = ("behaviour_pairs", "pair_id", PAIR_FEATURES)
ITEMS = ("item_content", "item_id", ITEM_FEATURES)
ENGINE = "feast"


class MissingInput(FileNotFoundError):
    """A table stage 1 needs is not there; the message says which command writes it."""


@dataclass(frozen=True)
class Stage1Frames:
    """What stage 1 reads, one row per id, as of `request_time`.

    pairs: pair_id + PAIR_FEATURES + event_timestamp (= last_seen, as in the mart);
    items: item_id + ITEM_FEATURES (both domains; a live room's start is start_timestamp) +
    first_appearance (the event time of the item's row in the store: a photo's first play, a
    room's start), read with the ids, so what is written about an item can be stamped with it.
    `unanswered` counts ids of the marts for which the store had no row at request_time.
    """

    pairs: pl.DataFrame
    items: pl.DataFrame
    request_time: datetime
    unanswered: int = 0


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


def _read_view(store, path: Path, spec: tuple[str, str, tuple[str, ...]], at: datetime,
               engine: str) -> tuple[pl.DataFrame, int]:
    """One view's features for every id of its mart, at `at`; (frame, ids without an answer)."""
    from rgcd.featurestore.store import frame

    view, key, features = spec
    # Ids only: the entity frame an engineer would build; the values come from the store.
    ids = pl.scan_parquet(path).select(key).unique().sort(key).collect()
    entities = ids.with_columns(pl.lit(at).dt.convert_time_zone("UTC").alias("event_timestamp"))
    got = frame(store, entities, service=None, features=[f"{view}:{f}" for f in features], engine=engine)
    got = got.rename({f"{view}__{f}": f for f in features}).drop("event_timestamp")
    # Every feature null = the store has no row for the id at `at` (e.g. a null event_timestamp).
    answered = got.filter(pl.any_horizontal(pl.col(f).is_not_null() for f in features))
    return answered, got.height - answered.height


def read_stage1_frames(ws: Workspace, settings: Settings, *, pairs: bool = True,
                       engine: str = ENGINE) -> Stage1Frames:
    """Behaviour pairs and item content through Feast, point in time at the marts' latest event.

    `pairs=False` reads item content only (stage 1b) and leaves `pairs` empty. `engine` is
    rgcd.featurestore.store.frame's: "feast" (default) or "asof" (see the module docstring).
    """
    specs = [PAIRS, ITEMS] if pairs else [ITEMS]
    paths = [_mart(ws, view) for view, _, _ in specs]
    store = checked_store(ws, settings, [view for view, _, _ in specs])
    at = _request_time(paths)
    read = {spec[0]: _read_view(store, path, spec, at, engine)
            for spec, path in zip(specs, paths, strict=True)}
    items, unanswered = read["item_content"]
    first = (pl.scan_parquet(paths[specs.index(ITEMS)]).group_by("item_id")
             .agg(pl.col("event_timestamp").min().alias("first_appearance")).collect())
    items = items.join(first, on="item_id", how="left")
    if pairs:
        pair_frame, missed = read["behaviour_pairs"]
        pair_frame = pair_frame.with_columns(pl.col("last_seen").alias("event_timestamp"))
        unanswered += missed
    else:
        pair_frame = pl.DataFrame(schema={"pair_id": pl.String, **{f: pl.Null for f in PAIR_FEATURES}})
    return Stage1Frames(pairs=pair_frame, items=items, request_time=at, unanswered=unanswered)
