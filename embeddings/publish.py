"""`rgcd publish`: one model version's vectors into Feast's online store and into Milvus.

Reads what stage 2 wrote (<ws>/feature_data/item_embeddings.parquet, user_embeddings.parquet;
interfaces 1 and 2), the rooms' on-air intervals through Feast (live_schedule), and the marts'
interactions for two things retrieval needs beside the vectors: each user's recent positive short
videos (feature_data/user_recent_videos.parquet, a Feast view) and each room's popularity (its
author's live sessions in the days before the training cut). The teacher's knowledge
(item_reasoning) goes beside each room in Milvus and beside each user's recent videos, so that a
request reads one user row and searches once. Rooms that went on air since stage 2 ran (`rgcd
rooms start`'s log, embeddings/rooms.py) are encoded with the version published and join it.

Order, so that a publish killed at any point leaves readers on the old collection:
1. a fresh collection `rooms_<version>` filled, flushed and validated (row count equals the
   published rows; a sample of vectors finds itself first), then marked published;
2. Feast online store: the version's item and user vectors (materialized, or written directly
   when the version is not the newest in the tables, e.g. a rollback);
3. the alias switched to it (one call); 4. collections beyond `retrieval.keep_versions` dropped.
Between 2 and 3 (and for `retrieval.cache_s` after 3, while readers trust their view of the alias)
readers whose online vector is already the new version search the new collection, validated in 1
(RoomVectors.for_version): with a server URI, `rgcd serve` answers throughout a publish, each answer
from one version. A kill between 2 and 3 leaves the alias on the old collection; readers of new
vectors keep searching the new one, never a mixed answer, until publish is run again.
Publishing a version whose collection is already published and validated changes nothing.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import pandas as pd

from rgcd.config import Settings, Workspace
from rgcd.embeddings.alias_log import record_switch
from rgcd.embeddings.milvus_store import (
    KNOWLEDGE,
    LAYOUT,
    ON_AIR,
    Room,
    RoomStats,
    RoomVectors,
    collection_name,
    refuse_lite_held,
)
from rgcd.embeddings.online_features import ITEM_VECTORS, RECENT_KNOWLEDGE, RECENT_VIDEOS, USER_VECTORS
from rgcd.errors import RgcdError
from rgcd.training.published_model import promote


class PublishError(RgcdError):
    """Publishing cannot go on; the message says what to do."""

    exit_code = 2


class NothingToPublish(PublishError):
    """Stage 2 has not written item vectors yet (the pipeline reports the stage as skipped)."""


@dataclass(frozen=True)
class PublishReport:
    """What one `rgcd publish` (or rollback) did."""

    model_version: str
    collection: str
    rooms: int
    on_air: int
    without_schedule: int
    previous: str | None
    changed: bool
    dropped: tuple[str, ...]
    online: str
    users_with_history: int
    started: str = ""

    def one_line(self) -> str:
        """Figures for the command line and the stage report."""
        what = "published" if self.changed else "unchanged"
        alias = (f"alias from {self.previous}" if self.previous and self.previous != self.collection
                 else "alias")
        line = (f"{what} {self.model_version}: {self.rooms:,} rooms ({self.on_air:,} on air) in "
                f"{self.collection}, {alias} -> {self.collection}; {self.users_with_history:,} users' recent "
                f"videos; online: {self.online}")
        if self.started:
            line += f"; {self.started}"
        if self.without_schedule:
            line += f"; {self.without_schedule:,} rooms without a schedule left out"
        if self.dropped:
            line += f"; dropped {', '.join(self.dropped)}"
        return line


def _read_vectors(ws: Workspace) -> pl.LazyFrame:
    """item_embeddings as a scan (columns checked): publish reads it window by window, never whole."""
    path = ws.feature_data / f"{ITEM_VECTORS}.parquet"
    if not path.exists():
        raise NothingToPublish(f"{path} does not exist yet: run `rgcd transfer` (stage 2) first")
    vectors = pl.scan_parquet(path)
    needed = {"item_id", "domain", "transferable", "residual", "retrieval", "model_version",
              "event_timestamp", "created_timestamp"}
    missing = sorted(needed - set(vectors.collect_schema().names()))
    if missing:
        raise PublishError(f"{path} lacks column(s) {missing} (what `rgcd transfer` writes: "
                           "docs/method.md, stage 2's outputs); rerun `rgcd transfer`")
    return vectors


def newest_version(vectors: pl.DataFrame | pl.LazyFrame) -> str:
    """The model version written last (by created_timestamp)."""
    return (vectors.lazy().select("model_version", "created_timestamp").sort("created_timestamp")
            .select(pl.col("model_version").last()).collect().item())


def _version_cut(vectors: pl.LazyFrame, version: str | None) -> tuple[str, datetime]:
    """The version to publish (default: the newest) and its rows' event time (stage 2's cut)."""
    version = version or newest_version(vectors)
    cut = vectors.filter(pl.col("model_version") == version).select(pl.col("event_timestamp").max()).collect()
    if cut.item() is None:
        known = sorted(vectors.select(pl.col("model_version").unique()).collect()["model_version"].to_list())
        raise PublishError(f"no vectors of model version {version!r}; known: {known}")
    return version, cut.item()


def _live_windows(ws: Workspace, version: str, rows: int) -> Iterator[pl.DataFrame]:
    """The version's live rows (item_id, transferable, retrieval), at most `rows` at a time, read from
    the file batch by batch with the version and domain filter pushed into the scan."""
    import pyarrow.dataset as ds

    scanner = ds.dataset(ws.feature_data / f"{ITEM_VECTORS}.parquet").scanner(
        columns=["item_id", "transferable", "retrieval"], batch_size=rows, use_threads=False,
        filter=(ds.field("model_version") == version) & (ds.field("domain") == "live"),
        batch_readahead=1, fragment_readahead=1)
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield pl.from_arrow(batch)


def _schedule(ws: Workspace, settings: Settings, item_ids: list[str]) -> pl.DataFrame:
    """Each room's author and on-air interval as Feast knows it now (live_schedule)."""
    from rgcd.featurestore import store as fs

    store = fs.feature_store(ws, settings)
    entities = pl.DataFrame({"item_id": item_ids}).with_columns(
        event_timestamp=pl.lit(datetime.now(UTC)).dt.cast_time_unit("us"))
    got = fs.frame(store, entities, service="publishing")
    return got.rename({"live_schedule__author_id": "author_id", "live_schedule__start_timestamp": "start",
                       "live_schedule__end_timestamp": "end"}).drop("event_timestamp")


def _interactions(ws: Workspace) -> pl.LazyFrame | None:
    path = ws.marts / "user_item_interactions.parquet"
    return pl.scan_parquet(path) if path.exists() else None


def author_popularity(ws: Workspace, cut: datetime, days: int) -> pl.DataFrame:
    """Live sessions per author in the `days` before `cut` (author_id, popularity)."""
    interactions = _interactions(ws)
    if interactions is None:
        return pl.DataFrame(schema={"author_id": pl.Int64, "popularity": pl.Float64})
    return (interactions.filter((pl.col("domain") == "live") & (pl.col("event_timestamp") <= cut)
                                & (pl.col("event_timestamp") > cut - timedelta(days=days)))
            .group_by("author_id").agg(popularity=pl.len().cast(pl.Float64)).collect())


def item_knowledge(ws: Workspace) -> pl.DataFrame:
    """The teacher's latest knowledge per item (item_id + KNOWLEDGE; '' where a field is null), from
    what `rgcd reason` wrote; empty before any reasoning."""
    path = ws.feature_data / "item_reasoning.parquet"
    if not path.exists():
        return pl.DataFrame(schema={"item_id": pl.String, **{f: pl.String for f in KNOWLEDGE}})
    return (pl.scan_parquet(path).sort(["event_timestamp", "created_timestamp"])
            .group_by("item_id").agg(pl.col(list(KNOWLEDGE)).last())
            .with_columns(pl.col(list(KNOWLEDGE)).fill_null("")).collect())


def recent_videos(ws: Workspace, cut: datetime, n: int, knowledge: pl.DataFrame) -> pl.DataFrame | None:
    """Each user's latest `n` positive short videos up to `cut`, newest first, as the Feast view
    user_recent_videos holds them (event_timestamp = the user's latest such play), with the
    teacher's knowledge of each video beside it ('' where none), so that one online read of a
    user gives retrieval everything its reasons compare."""
    interactions = _interactions(ws)
    if interactions is None:
        return None
    latest = (interactions.filter((pl.col("domain") == "photo") & pl.col("is_positive")
                                  & (pl.col("event_timestamp") <= cut))
              .sort(["user_id", "event_timestamp", "item_id"], descending=[False, True, False])
              .group_by("user_id", maintain_order=True)
              .agg(pl.col("item_id").head(n), event_timestamp=pl.col("event_timestamp").max())
              .with_columns(pl.col("event_timestamp").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
              .collect())
    per_video = (latest.select("user_id", "item_id")
                 .with_columns(rank=pl.int_ranges(pl.col("item_id").list.len()))
                 .explode("item_id", "rank").join(knowledge, on="item_id", how="left")
                 .with_columns(pl.col(list(KNOWLEDGE)).fill_null("")).sort("user_id", "rank")
                 .group_by("user_id", maintain_order=True)
                 .agg(recent_photo_ids=pl.col("item_id"),
                      **{RECENT_KNOWLEDGE[f]: pl.col(f) for f in KNOWLEDGE if f in RECENT_KNOWLEDGE}))
    return per_video.join(latest.select("user_id", "event_timestamp"), on="user_id").sort("user_id")


def _write_recent_videos(ws: Workspace, table: pl.DataFrame) -> bool:
    """Write user_recent_videos.parquet unless it already holds the same history; True if written."""
    from rgcd.atomic import write_parquet_atomic

    path = ws.feature_data / f"{RECENT_VIDEOS}.parquet"
    if path.exists():
        old = pl.read_parquet(path).drop("created_timestamp")
        if old.equals(table):  # same history: keep its created_timestamp, so a republish changes nothing
            return False
    now = datetime.now(UTC)
    write_parquet_atomic(table.with_columns(created_timestamp=pl.lit(now).dt.cast_time_unit("us")), path)
    return True


def load_online(ws: Workspace, settings: Settings, version: str, vectors: pl.DataFrame) -> str:
    """Bring the online store's item and user vectors to `version`; one line.

    The newest version is materialized (interface 6); an older one (a rollback) is written directly,
    since materialization loads the latest row of each entity, which is the newer version's.
    """
    from rgcd.featurestore import store as fs

    views = [ITEM_VECTORS, USER_VECTORS, RECENT_VIDEOS]
    if version == newest_version(vectors):
        return fs.materialize_views(ws, settings, views)
    store = fs.feature_store(ws, settings)
    written = []
    for view, path in ((ITEM_VECTORS, ws.feature_data / f"{ITEM_VECTORS}.parquet"),
                       (USER_VECTORS, ws.feature_data / f"{USER_VECTORS}.parquet")):
        if not path.exists():
            continue
        rows = pl.scan_parquet(path).filter(pl.col("model_version") == version).collect()
        if rows.height:
            with contextlib.redirect_stdout(io.StringIO()):
                store.write_to_online_store(view, rows.to_pandas())
            written.append(f"{view} {rows.height:,} rows")
    return f"wrote {version} directly ({', '.join(written) or 'nothing'})"


ROOM_COLUMNS = ("item_id", "author_id", "start", "end", "popularity", "transferable", "retrieval", *KNOWLEDGE)


def _scheduled(ws: Workspace, settings: Settings, live: pl.DataFrame, popularity: pl.DataFrame,
               knowledge: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """One window of live rows with its schedule (through Feast), popularity and knowledge: the rows
    with a schedule (ROOM_COLUMNS) and how many have none."""
    schedule = _schedule(ws, settings, live["item_id"].to_list())
    joined = (live.join(schedule, on="item_id", how="left")
              .join(popularity, on="author_id", how="left")
              .join(knowledge, on="item_id", how="left")
              .with_columns(pl.col("popularity").fill_null(0.0)))
    known = joined.filter(pl.col("author_id").is_not_null() & pl.col("start").is_not_null())
    return known.select(ROOM_COLUMNS), joined.height - known.height


def _to_rooms(frame: pl.DataFrame) -> list[Room]:
    return [Room(r["item_id"], r["author_id"], r["start"], r["end"], r["popularity"], r["transferable"],
                 r["retrieval"], {f: r[f] or "" for f in KNOWLEDGE}) for r in frame.iter_rows(named=True)]


@dataclass
class _Staged:
    """The version's rooms with a schedule, staged in a parquet file beside the vectors (one window
    of Feast reads at a time), and their figures."""

    path: Path
    stats: RoomStats
    unscheduled: int
    dims: tuple[int, int]

    def windows(self, rows: int) -> Iterator[list[Room]]:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(self.path, pre_buffer=False).iter_batches(batch_size=rows,
                                                                              use_threads=False):
            yield _to_rooms(pl.from_arrow(batch))


def _stage_rooms(ws: Workspace, settings: Settings, version: str, cut: datetime, knowledge: pl.DataFrame,
                 path: Path) -> _Staged:
    """Join each window of the version's live rows with its schedule and write it to `path`."""
    import pyarrow.parquet as pq

    popularity = author_popularity(ws, cut, settings.retrieval.popularity_days)
    stats, unscheduled, dims, writer = RoomStats(), 0, (0, 0), None
    try:
        for live in _live_windows(ws, version, settings.retrieval.publish_batch_rooms):
            known, missing = _scheduled(ws, settings, live, popularity, knowledge)
            unscheduled += missing
            if known.height == 0:
                continue
            stats.add(_to_rooms(known))
            table = known.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
                first = known.row(0, named=True)
                dims = (len(first["transferable"]), len(first["retrieval"]))
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()
    return _Staged(path, stats, unscheduled, dims)


def _started_since(ws: Workspace, settings: Settings, version: str, staged: Path, cut: datetime,
                   knowledge: pl.DataFrame) -> tuple[list[Room], pd.DataFrame | None, str]:
    """Rooms that went on air since stage 2 ran (`rgcd rooms start`'s log) and that `version` has no
    vectors for, encoded with it: (rooms, their vectors for the online store, what was done)."""
    import pandas as pd

    from rgcd.embeddings.retrieval import RetrievalError
    from rgcd.embeddings.rooms import RoomEncoder, read_started

    log = read_started(ws)
    if log is None:
        return [], None, ""
    ids = log["item_id"].implode()
    published = (pl.scan_parquet(staged).select("item_id").filter(pl.col("item_id").is_in(ids)).collect()
                 if staged.exists() else pl.DataFrame(schema={"item_id": pl.String}))
    log = log.filter(~pl.col("item_id").is_in(published["item_id"].implode()))
    if log.height == 0:
        return [], None, ""
    try:
        encoder = RoomEncoder(ws, settings, version)
    except RetrievalError as err:
        return [], None, f"{log.height:,} rooms started since stage 2 left out ({err})"
    if encoder.model_version != version:
        return [], None, (f"{log.height:,} rooms started since stage 2 left out (the stage-2 model on disk "
                          f"is {encoder.model_version}, not {version}: they join when it is published)")
    started = log.to_dicts()
    vectors = encoder.encode([r["item_id"] for r in started], started)
    popularity = dict(author_popularity(ws, cut, settings.retrieval.popularity_days).iter_rows())
    known = {r["item_id"]: r for r in knowledge.filter(pl.col("item_id").is_in(log["item_id"].implode()))
             .iter_rows(named=True)}
    out = [Room(r["item_id"], r["author_id"], r["start_timestamp"], r["end_timestamp"],
                popularity.get(r["author_id"], 0.0), v["transferable"], v["retrieval"],
                {f: known.get(r["item_id"], {}).get(f) or "" for f in KNOWLEDGE})
           for r, v in zip(started, vectors, strict=True)]
    frame = pd.DataFrame({"item_id": [r.item_id for r in out],
                          **{f: [v[f] for v in vectors] for f in ("transferable", "residual", "retrieval")},
                          "model_version": version, "event_timestamp": [r.start for r in out],
                          "created_timestamp": datetime.now(UTC)})
    return out, frame, f"{len(out):,} rooms started since stage 2 encoded with {version}"


def publish(ws: Workspace, settings: Settings, version: str | None = None) -> PublishReport:
    """Publish one model version (default: the newest) to Feast and Milvus; see the module docstring.

    Rooms go through in windows of `retrieval.publish_batch_rooms`: each window's schedule is read
    through Feast and the joined rows staged in a file, then inserted window by window; no step
    holds every room (tests/embeddings/test_publish.py checks the windows' sizes)."""
    refuse_lite_held(ws, settings)  # before any work: the Milvus Lite file may be another process's
    from rgcd.featurestore.store import FeatureStoreError

    vectors = _read_vectors(ws)
    version, cut = _version_cut(vectors, version)
    knowledge = item_knowledge(ws)
    history = recent_videos(ws, cut, settings.retrieval.history_videos, knowledge)
    if history is not None:
        _write_recent_videos(ws, history)
    staging = ws.feature_data / f".publish_rooms_{version}.parquet"
    staging.unlink(missing_ok=True)
    try:
        try:
            staged = _stage_rooms(ws, settings, version, cut, knowledge, staging)
        except FeatureStoreError as err:
            raise PublishError(str(err)) from None
        if staged.stats.rooms == 0:
            raise PublishError(f"model version {version} has no live rooms with a schedule in Feast "
                               "(live_schedule): run `rgcd build` and `rgcd features apply` first")
        late, late_vectors, started = _started_since(ws, settings, version, staging, cut, knowledge)
        staged.stats.add(late)
        store = RoomVectors.connect(ws, settings)
        try:
            previous = store.alias_target()
            name, changed = _fill(store, settings, version, staged, late)
            try:  # last before the switch: the window where online vectors and alias differ stays short
                online = load_online(ws, settings, version, vectors)
                if late_vectors is not None:  # after the view's own rows, so that these win
                    from feast.data_source import PushMode

                    from rgcd.embeddings.rooms import PUSH_SOURCE
                    from rgcd.featurestore.store import feature_store

                    feature_store(ws, settings).push(PUSH_SOURCE, late_vectors, to=PushMode.ONLINE)
            except FeatureStoreError as err:
                raise PublishError(str(err)) from None
            store.switch_alias(name)
            if previous != name:
                record_switch(ws, "publish", version, name, previous)
            promote(ws, version)
            dropped = store.prune(settings.retrieval.keep_versions)
        finally:
            store.close()
    finally:
        staging.unlink(missing_ok=True)
    stats = staged.stats
    return PublishReport(version, name, stats.rooms, stats.on_air, staged.unscheduled, previous,
                         changed or previous != name, tuple(dropped), online,
                         0 if history is None else history.height, started)


def _fill(store: RoomVectors, settings: Settings, version: str, staged: _Staged,
          late: list[Room]) -> tuple[str, bool]:
    """The validated collection of `version`: reused if already published with these rows and the index
    asked, else built window by window from the staged rooms (then the rooms started since stage 2).

    A rebuild of a version already published (rooms started since joined it) goes into a new
    collection `rooms_<version>_<n>`: the one readers search stays whole until the alias moves.
    """
    stats = staged.stats
    published = store.published()
    target = store.alias_target()
    index = store.buildable(settings.retrieval.index)
    same = [p for p in published if p.validated and p.model_version == version and p.layout == LAYOUT
            and p.published_rows == stats.rooms
            and p.indexed_as(index)]
    if same:
        return next((p.collection for p in same if p.collection == target), same[-1].collection), False
    validated = {p.collection for p in published if p.validated}
    name, n = collection_name(version), 1
    while name in validated:
        n += 1
        name = f"{collection_name(version)}_{n}"
    dims = staged.dims if staged.dims != (0, 0) else (len(late[0].transferable), len(late[0].retrieval))
    store.create(version, dims[0], dims[1], name, index)
    layout = store.begin_insert(name, stats)
    batch, wanted = settings.retrieval.insert_batch, settings.retrieval.validate_sample
    step, sample, seen = max(1, stats.rooms // wanted), [], 0
    for rooms in (*staged.windows(settings.retrieval.publish_batch_rooms), late):
        store.insert_window(name, rooms, batch, layout)
        # every step-th room across the windows, as many as validate_sample asks
        sample += [r for i, r in enumerate(rooms, seen) if i % step == 0][: wanted - len(sample)]
        seen += len(rooms)
    store.flush(name)
    store.validate(name, stats.rooms, sample)
    store.mark_published(name, stats.rooms, stats.ended_until, stats.started_from)
    return name, True


def rollback(ws: Workspace, settings: Settings) -> PublishReport:
    """Point the alias back at the version published before the current one, online vectors too."""
    refuse_lite_held(ws, settings)
    from rgcd.featurestore.store import FeatureStoreError

    store = RoomVectors.connect(ws, settings)
    try:
        target = store.alias_target()
        good = [p for p in store.published() if p.validated]
        names = [p.collection for p in good]
        if target is None or target not in names or names.index(target) == 0:
            kept = ", ".join(p.model_version for p in good) or "none"
            raise PublishError(f"no earlier published version to roll back to (kept: {kept}); "
                               "retrieval.keep_versions sets how many are kept")
        back = good[names.index(target) - 1]
        vectors = _read_vectors(ws)
        try:
            online = load_online(ws, settings, back.model_version, vectors)
        except FeatureStoreError as err:
            raise PublishError(str(err)) from None
        store.switch_alias(back.collection)
        record_switch(ws, "rollback", back.model_version, back.collection, target)
        promote(ws, back.model_version)
        rooms = store.count(back.collection)
        on_air = store.count(back.collection, ON_AIR)
    finally:
        store.close()
    return PublishReport(back.model_version, back.collection, rooms, on_air, 0, target, True, (), online, 0)


def run_stage(ws: Workspace, settings: Settings) -> str:
    """The `publish` stage of `rgcd run`; skipped while stage 2 has written no vectors."""
    try:
        return publish(ws, settings).one_line()
    except NothingToPublish as err:
        return f"skipped: {err}"

