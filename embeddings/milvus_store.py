"""The Milvus side of serving: one collection per model version, an alias readers search through.

A collection `rooms_<model version>` holds every live room of that version: `item_id`, `author_id`,
`start_ms` and `end_ms` (epoch ms; end null while on air), `popularity`, the teacher's knowledge
of the room as of publication (`vertical_domain`, `key_subject`, `content_theme`, `teacher_id`; ''
where the teacher has not seen it: a search returns what a candidate's reason needs, with no second
read per request), and two vectors:
`transferable` (stage 2's cross-domain space, cosine: short video -> live) and `retrieval` (the
two-tower item tower, inner product against the user tower: user -> live). Properties record the
model version, how many rows were published, when, and whether the collection passed validation.

Rooms on air at publication, and rooms started since, live in the partition `on_air`; rooms ended
by publication time in partitions by start day, `ended_<n>` (n = start_ms // bucket_ms; a bucket is
a day unless the archive spans more than MAX_BUCKETS days). Milvus Lite 3.x walks every primary key
of what it searches in Python, so a query costs what the searched partitions hold: a request at or
after the last end known at publication (`ended_until`; every request "now") searches only `on_air`,
about as many rooms as are on air; a historical request at `at` also searches the buckets a room on
air then can have started in, (at - span_ms, at], span_ms being the longest ended room: one or two
days' partitions, not the archive. The on-air filter applies to all, so a room that ends between publications
stays in `on_air` with its end time set (its row is updated in place: Milvus Lite versions a primary
key across partitions, so a row moved by delete + insert would come back in the old partition) and
leaves every later request's candidates; the next publication starts from a clean collection.

Talks to Milvus through pymilvus' MilvusClient only (Feast's Milvus online store mismatches ids and
features on search; docs/serving.md, Milvus); the same code runs on the Lite file and on a server
URI. What a server of another generation cannot do is handled here and only here (`Dialect`):
- Milvus 2.3 (the packaged server, `rgcd milvus start`) allows one vector field per collection: the
  `retrieval` vectors go to a companion collection `<collection>__retrieval` with the same scalars and
  partitions, written and dropped with it; readers still resolve one alias (the companion follows its
  collection, so a switch stays one call). It has no nullable fields: a room on air has `end_ms` =
  END_NEVER there, read back as None. No hybrid search is used anywhere.
- Consistency on a server: readers search at `Session` (they see their own process's writes, e.g. a
  room started through the same `rgcd serve`, and otherwise what the server has applied, ~2 ms a
  search); what checks a write (validation counts, a room's end) reads at `Strong` (waits for the
  server's time tick, ~200-400 ms). Validation passing at `Strong` before the alias moves means every
  reader sees the whole collection once it does. Milvus Lite reads its own writes and ignores levels.
- A reader whose query vector has another model version than the alias's collection (the minutes of a
  publish between the online store's update and the alias switch, or readers whose alias view is up to
  `cache_s` old) searches the validated collection of its own version when one exists: a publish under
  load answers every request, each from one version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rgcd.config import IndexConfig, Settings, Workspace
from rgcd.errors import RgcdError

ON_AIR, ENDED = "on_air", "ended"  # `ended`: the archive in one partition (layout 2)
DAY_MS = 86_400_000
MAX_BUCKETS = 1_000  # partitions of ended rooms at most (Milvus allows 1,024 to 4,096 per collection)
# Open clients per Milvus Lite file in this process: the file's in-process server is stopped when
# the last one closes, so that another process may open it (Milvus Lite allows one per file).
_LITE_CLIENTS: dict[str, int] = {}
PREFIX = "rooms_"
KNOWLEDGE = ("vertical_domain", "key_subject", "content_theme", "teacher_id")
SCALARS = ["item_id", "author_id", "start_ms", "end_ms", "popularity", *KNOWLEDGE]
# The teacher's fields are bounded at 48 characters (training/reasoning/schema.py); a teacher id is a
# model name or path.
KNOWLEDGE_LENGTH = 512
METRICS = {"transferable": "COSINE", "retrieval": "IP"}
# The collection's field layout; a collection of another layout is rebuilt by the next publish.
LAYOUT = "3"  # 2: the teacher's knowledge beside the vectors; 3: ended rooms by start day
# Milvus caps one query's result window at 16,384 rows.
QUERY_WINDOW = 16_384
# `end_ms` of a room on air where fields cannot be null (Milvus 2.3).
END_NEVER = 2**63 - 1
# Extra hits a batched search asks for when its searches' times differ: rooms that started or ended
# between those times (ms apart) take no slot of another search's k.
BATCH_MARGIN = 8
COMPANION = "__retrieval"  # suffix of the retrieval vectors' collection on Milvus 2.3


@dataclass(frozen=True)
class Dialect:
    """What the Milvus behind a URI can do; every 2.3 / 3.x / Lite difference is decided here."""

    name: str
    split_vectors: bool  # one vector field per collection: `retrieval` in a companion collection
    nullable: bool  # nullable scalar fields (else END_NEVER for "on air")
    read: dict  # extra arguments of reader calls (consistency)
    check: dict  # extra arguments of reads that check a write
    # 2.3 lists and describes aliases of the default database only (whatever database the client
    # names), and keeps an alias whose collection was dropped: resolve it through describe_collection
    alias_by_describe: bool = False
    flush: bool = True  # flush after a bulk insert (Lite: else brute force in Python; a server: ~2 s)
    indexes: bool = False  # builds the index asked (Milvus Lite: FLAT whatever is asked)

    @classmethod
    def of(cls, client, server: bool) -> Dialect:
        if not server:
            return cls("milvus-lite", False, True, {}, {})
        version = client.get_server_version()
        major, minor = (int(x) for x in re.findall(r"\d+", version)[:2])
        old = (major, minor) < (2, 5)
        return cls(f"milvus {version}", (major, minor) < (2, 4), not old,
                   {"consistency_level": "Session"}, {"consistency_level": "Strong"}, (major, minor) < (2, 4),
                   flush=False, indexes=True)



class VectorStoreError(RgcdError):
    """Milvus cannot do what was asked; the message says what to do."""

    exit_code = 2


class NotPublished(VectorStoreError):
    """No collection is published under the alias yet."""


def to_ms(t: datetime) -> int:
    """Epoch milliseconds of a UTC datetime (naive = UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    """The UTC datetime of epoch milliseconds (None stays None)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def milvus_uri(ws: Workspace, settings: Settings) -> str:
    """`retrieval.milvus_uri`, or the Milvus Lite file <workspace>/milvus/rooms.db."""
    if settings.retrieval.milvus_uri:
        return settings.retrieval.milvus_uri
    ws.milvus.mkdir(parents=True, exist_ok=True)
    return str(ws.milvus / "rooms.db")


def collection_name(model_version: str) -> str:
    """The collection of one model version (Milvus names allow letters, digits and _)."""
    return PREFIX + re.sub(r"[^0-9A-Za-z_]", "_", model_version)


@dataclass(frozen=True)
class Room:
    """One live room as Milvus holds it."""

    item_id: str
    author_id: int
    start: datetime
    end: datetime | None
    popularity: float
    transferable: list[float]
    retrieval: list[float]
    knowledge: dict[str, str] | None = None

    def row(self) -> dict:
        known = self.knowledge or {}
        return {"item_id": self.item_id, "author_id": int(self.author_id), "start_ms": to_ms(self.start),
                "end_ms": None if self.end is None else to_ms(self.end), "popularity": float(self.popularity),
                **{f: (known.get(f) or "")[:KNOWLEDGE_LENGTH] for f in KNOWLEDGE},
                "transferable": list(self.transferable), "retrieval": list(self.retrieval)}


@dataclass
class RoomStats:
    """What the partitions' layout of a collection needs to know of all its rooms, gathered window by
    window (publish never holds every room)."""

    rooms: int = 0
    on_air: int = 0
    ended: int = 0
    ended_start_min: int = 0
    ended_start_max: int = 0
    ended_span_max: int = 0
    ended_until: int = 0  # the last end (ms), 0 when none ended
    started_from: int = 0  # the first start (ms)

    def add(self, rooms: list[Room]) -> None:
        for r in rooms:
            start = to_ms(r.start)
            self.started_from = start if self.rooms == 0 else min(self.started_from, start)
            self.rooms += 1
            if r.end is None:
                self.on_air += 1
                continue
            end = to_ms(r.end)
            first = self.ended == 0
            self.ended += 1
            self.ended_start_min = start if first else min(self.ended_start_min, start)
            self.ended_start_max = start if first else max(self.ended_start_max, start)
            self.ended_span_max = max(self.ended_span_max, end - start)
            self.ended_until = max(self.ended_until, end)

    @classmethod
    def of(cls, rooms: list[Room]) -> RoomStats:
        stats = cls()
        stats.add(rooms)
        return stats


@dataclass
class RoomLayout:
    """How ended rooms are cut into partitions (`bucket_ms`), the longest ended room (`span_ms`), and
    the partitions created so far."""

    bucket_ms: int
    span_ms: int
    created: set[str] = dataclasses.field(default_factory=set)


@dataclass(frozen=True)
class Published:
    """A collection of one model version and what its properties say."""

    collection: str
    model_version: str
    published_rows: int
    published_at: float
    validated: bool
    ended_until: int
    layout: str
    bucket_ms: int = DAY_MS  # width of an `ended_<n>` partition
    span_ms: int = 0  # the longest ended room (end - start)
    started_from: int = 0  # epoch ms of the oldest room's start (0: published before it was recorded)
    index: str = "FLAT"  # the vector index (FLAT: exact)
    search: tuple[tuple[str, int], ...] = ()  # its search parameters, as validated

    def search_params(self, field: str, limit: int) -> dict:
        """What a search of `limit` hits in `field` asks Milvus (HNSW keeps at least `limit` candidates)."""
        params = dict(self.search)
        if "ef" in params:
            params["ef"] = max(params["ef"], limit)
        asked = {"metric_type": METRICS[field]}
        return asked | {"params": params} if params else asked

    def indexed_as(self, index: IndexConfig) -> bool:
        """Whether this collection was built with `index` and searches with its parameters."""
        return (self.index, dict(self.search)) == (index.type, index.search_params())

    def only_on_air(self, at_ms: int) -> bool:
        """Whether `on_air` holds every room on air at `at_ms`: at or after the last end known at
        publication (every request "now"), every room in an `ended` partition had ended by then."""
        return at_ms >= self.ended_until


@dataclass(frozen=True)
class Search:
    """One search of the rooms on air at `at_ms`: the k nearest to `vector` in `field` of `published`."""

    field: str
    vector: list[float]
    at_ms: int
    k: int
    published: Published


@dataclass(frozen=True)
class Hit:
    """A candidate room: id, author, score (cosine or inner product), popularity, teacher knowledge."""

    item_id: str
    author_id: int
    score: float
    popularity: float
    start_ms: int
    end_ms: int | None
    knowledge: dict[str, str]


class RoomVectors:
    """The rooms' vectors in Milvus: publishing (writer side) and on-air search (reader side)."""

    def __init__(self, uri: str, alias: str, token: str = "", cache_s: float = 1.0,
                 db_name: str = "") -> None:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        # pymilvus logs every server-side error with its stack before raising it (and sets its own
        # level on import); the errors become messages here, so its logger stays quiet.
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        # Milvus Lite's in-process gRPC server does not implement AllocTimestamp; pymilvus asks for
        # it on some writes, falls back, and grpc logs the refusal as an ERROR with a traceback.
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        # Milvus Lite logs a ~20-line traceback when another process holds the file; the check below
        # says so first, in one line.
        logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)
        self.uri, self.alias, self.cache_s = uri, alias, cache_s
        if not is_server(uri):
            refuse_lite_file_held_elsewhere(uri)
        try:
            given = {"token": token} if token else {}
            if db_name:
                given["db_name"] = db_name
            self.client = MilvusClient(uri=uri, **given)
        except MilvusException as err:
            raise VectorStoreError(_open_hint(uri, err)) from None
        except OSError as err:
            raise VectorStoreError(_open_hint(uri, err)) from None
        self._current: tuple[float, Published] | None = None
        self._versions: tuple[float, dict[str, Published]] | None = None
        self._partition_names: dict[str, set[str]] = {}
        self._loaded: set[str] = set()
        self._lite = None if is_server(uri) else str(Path(uri).resolve())
        try:
            self.dialect = Dialect.of(self.client, is_server(uri))
        except MilvusException as err:
            self.client.close()
            raise VectorStoreError(_open_hint(uri, err)) from None
        if self._lite:
            _LITE_CLIENTS[self._lite] = _LITE_CLIENTS.get(self._lite, 0) + 1

    @classmethod
    def connect(cls, ws: Workspace, settings: Settings) -> RoomVectors:
        """The store `retrieval.milvus_uri` names (default: the workspace's Milvus Lite file)."""
        r = settings.retrieval
        return cls(milvus_uri(ws, settings), r.alias, r.milvus_token, r.cache_s, r.milvus_db)

    def close(self) -> None:
        """Release the client; with the last client of a Milvus Lite file, the file itself."""
        self.client.close()
        if self._lite:
            _LITE_CLIENTS[self._lite] -= 1
            if _LITE_CLIENTS[self._lite] == 0:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self._lite)
            self._lite = None

    # -- writer side -------------------------------------------------------------------------

    def published(self) -> list[Published]:
        """Every rooms collection in the store, oldest publication first (unvalidated ones too)."""
        out = []
        for name in self.client.list_collections():
            if name.startswith(PREFIX) and not name.endswith(COMPANION):
                out.append(self._describe(name))
        return sorted(out, key=lambda p: (p.published_at, p.collection))

    def _describe(self, name: str) -> Published:
        props = self.client.describe_collection(name).get("properties", {})
        return Published(name, props.get("model_version", ""), int(props.get("published_rows", 0)),
                         float(props.get("published_at", 0)), props.get("validated") == "true",
                         int(props.get("ended_until", 0)), props.get("layout", "1"),
                         int(props.get("bucket_ms", DAY_MS)), int(props.get("span_ms", 0)),
                         int(props.get("started_from", 0)), *_index_of(props.get("index", "")))

    def create(self, model_version: str, dim_transferable: int, dim_retrieval: int,
               name: str | None = None, index: IndexConfig | None = None) -> str:
        """A fresh, empty collection for `model_version` (default name `rooms_<version>`; a leftover of
        a killed publish under that name is dropped), its vectors indexed as `index` asks (a server;
        Milvus Lite: FLAT)."""
        from pymilvus import DataType

        name = name or collection_name(model_version)
        self.drop(name)
        dims = {"transferable": dim_transferable, "retrieval": dim_retrieval}
        index = self.buildable(index)
        recorded = json.dumps({"type": index.type, "search": index.search_params()})

        def make(physical: str, fields: tuple[str, ...]) -> None:
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False,
                                               description=f"live rooms of model version {model_version}")
            schema.add_field("item_id", DataType.VARCHAR, is_primary=True, max_length=128)
            schema.add_field("author_id", DataType.INT64)
            schema.add_field("start_ms", DataType.INT64)
            if self.dialect.nullable:
                schema.add_field("end_ms", DataType.INT64, nullable=True)
            else:
                schema.add_field("end_ms", DataType.INT64)
            schema.add_field("popularity", DataType.FLOAT)
            for field in KNOWLEDGE:
                schema.add_field(field, DataType.VARCHAR, max_length=KNOWLEDGE_LENGTH)
            params = self.client.prepare_index_params()
            for field in fields:
                schema.add_field(field, DataType.FLOAT_VECTOR, dim=dims[field])
                params.add_index(field, index_type=index.type, index_name=field, metric_type=METRICS[field],
                                 params=index.build_params())
            properties = ({"model_version": model_version, "validated": "false", "layout": LAYOUT,
                           "index": recorded}
                          if physical == name else {"model_version": model_version, "companion_of": name})
            self.client.create_collection(physical, schema=schema, index_params=params, properties=properties)
            self.client.create_partition(physical, ON_AIR)
            self._loaded.add(physical)

        # a server loads each new collection before it answers (~2 s on 2.3): both at once
        with ThreadPoolExecutor(len(self._physical(name))) as pool:
            list(pool.map(make, *zip(*self._physical(name).items(), strict=True)))
        return name

    def buildable(self, index: IndexConfig | None) -> IndexConfig:
        """The index `create` builds when `index` is asked (Milvus Lite, or none asked: FLAT)."""
        return index if index and self.dialect.indexes else IndexConfig()

    def _physical(self, name: str) -> dict[str, tuple[str, ...]]:
        """The Milvus collections behind one rooms collection and the vector fields each holds."""
        if self.dialect.split_vectors:
            return {name: ("transferable",), name + COMPANION: ("retrieval",)}
        return {name: tuple(METRICS)}

    def _holding(self, name: str, field: str) -> str:
        """The Milvus collection that holds `field`'s vectors of a rooms collection."""
        return next(c for c, fields in self._physical(name).items() if field in fields)

    def drop(self, name: str) -> None:
        """Drop a rooms collection (and its companion) if it exists."""
        for physical in (name, name + COMPANION):
            if self.client.has_collection(physical):
                self.client.drop_collection(physical)
            self._loaded.discard(physical)
            self._partition_names.pop(physical, None)

    def _write(self, name: str, rows: list[dict], partition: str, upsert: bool = False) -> None:
        """Insert (or upsert) full rows into a rooms collection, each Milvus collection its fields."""
        for physical, fields in self._physical(name).items():
            drop = set(METRICS) - set(fields)
            chunk = [self._stored({k: v for k, v in r.items() if k not in drop}) for r in rows]
            if upsert:
                self.client.upsert(physical, chunk, partition_name=partition)
            else:
                self.client.insert(physical, chunk, partition_name=partition)

    def _stored(self, row: dict) -> dict:
        if not self.dialect.nullable and "end_ms" in row and row["end_ms"] is None:
            return row | {"end_ms": END_NEVER}
        return row

    def _read(self, row: dict) -> dict:
        if row.get("end_ms") == END_NEVER:
            return row | {"end_ms": None}
        return row

    def insert(self, name: str, rooms: list[Room], batch: int) -> None:
        """Insert rooms into their partitions, then flush (unflushed rows are searched brute force)."""
        layout = self.begin_insert(name, RoomStats.of(rooms))
        self.insert_window(name, rooms, batch, layout)
        self.flush(name)

    def begin_insert(self, name: str, stats: RoomStats) -> RoomLayout:
        """The partitions' layout of a collection about to hold rooms of `stats` (recorded in its
        properties); rooms then go in window by window (`insert_window`), then `flush`."""
        days = (stats.ended_start_max - stats.ended_start_min) // DAY_MS + 1 if stats.ended else 1
        layout = RoomLayout(bucket_ms=DAY_MS * -(-days // MAX_BUCKETS), span_ms=stats.ended_span_max)
        self.client.alter_collection_properties(name, {"bucket_ms": str(layout.bucket_ms),
                                                       "span_ms": str(layout.span_ms)})
        return layout

    def insert_window(self, name: str, rooms: list[Room], batch: int, layout: RoomLayout) -> None:
        """Insert one window of rooms into their partitions (each partition created when first needed)."""
        buckets: dict[str, list[Room]] = {}
        for room in rooms:
            if room.end is not None:
                buckets.setdefault(f"ended_{to_ms(room.start) // layout.bucket_ms}", []).append(room)
        for partition in sorted(set(buckets) - layout.created):
            for physical in self._physical(name):
                self.client.create_partition(physical, partition)
            layout.created.add(partition)
        for partition, part in ((ON_AIR, [r for r in rooms if r.end is None]), *sorted(buckets.items())):
            for start in range(0, len(part), batch):
                self._write(name, [r.row() for r in part[start:start + batch]], partition)

    def flush(self, name: str, timeout_s: float = 1800) -> None:
        """After a bulk insert, make the rows searchable as fast as they can be: Milvus Lite searches
        unflushed rows row by row; a server searches unsealed rows exactly, with no index, so an
        approximate index needs the rows sealed, indexed and loaded with their index."""
        approximate = self._describe(name).index != "FLAT"
        if not (self.dialect.flush or approximate):
            return
        for physical in self._physical(name):
            self.client.flush(physical)
        if approximate:
            for physical, fields in self._physical(name).items():
                self._wait_indexed(physical, fields, time.monotonic() + timeout_s)

    def index_state(self, name: str) -> list[dict]:
        """Milvus' account of each vector index behind a collection: rows indexed, rows in total, rows
        waiting for a build (segments merged by compaction are indexed again), state."""
        return [self.client.describe_index(physical, field)
                for physical, fields in self._physical(name).items() for field in fields]

    def _wait_indexed(self, physical: str, fields: tuple[str, ...], deadline: float) -> None:
        """Wait until every sealed row of `physical` is indexed, then load the collection again so
        that its query node searches the index (not the rows it loaded before). Segments that
        compaction merges afterwards are indexed again in the background (`pending_index_rows`); the
        query node keeps searching the indexed ones until then."""
        for field in fields:
            while True:
                state = self.client.describe_index(physical, field)
                if state.get("state") == "Failed":
                    raise VectorStoreError(f"Milvus could not build the {field} index of {physical} "
                                           f"({state.get('index_state_fail_reason') or 'no reason given'}); "
                                           "set retrieval.index.type: FLAT or fix the index parameters")
                if state.get("indexed_rows", 0) >= state.get("total_rows", 0):
                    break
                if time.monotonic() > deadline:
                    done = f"{state.get('indexed_rows')} of {state.get('total_rows')} rows"
                    raise VectorStoreError(f"the {field} index of {physical} was not built in time ({done}): "
                                           "run `rgcd publish` again")
                time.sleep(0.2)
        self.client.release_collection(physical)
        self.client.load_collection(physical)

    def dims(self, name: str) -> dict[str, int]:
        """The length of each vector field of a collection."""
        fields = self.client.describe_collection(name)["fields"]
        return {f["name"]: int(f["params"]["dim"]) for f in fields if "dim" in f.get("params", {})}

    def count(self, name: str, partition: str | None = None) -> int:
        """Rows in a collection (or one of its partitions); on a server, as of now (Strong)."""
        self._ensure_loaded(name)
        if partition and not self.dialect.read:
            # Milvus Lite 3.2.2's count(*) ignores partition_names (it counts the whole collection);
            # the partition's statistics are its own (a server's count upserted rows twice there)
            return int(self.client.get_partition_stats(name, partition)["row_count"])
        counts = []
        for physical in self._physical(name):
            self._ensure_loaded(physical)
            got = self.client.query(physical, filter="", output_fields=["count(*)"],
                                    partition_names=[partition] if partition else None, **self.dialect.check)
            counts.append(int(got[0]["count(*)"]))
        if len(set(counts)) > 1:
            raise VectorStoreError(f"collection {name} and its retrieval vectors hold {counts} rows: run "
                                   "`rgcd publish` again")
        return counts[0]

    def validate(self, name: str, expected_rows: int, sample: list[Room]) -> None:
        """Raise unless the collection holds `expected_rows` rows and each sampled vector finds itself.

        "Finds itself" = the nearest room in the transferable space (cosine) is the room itself, or a
        room with the very same vector (a tie the index may order either way).
        """
        got = self.count(name)
        if got != expected_rows:
            raise VectorStoreError(f"collection {name} holds {got} rows, {expected_rows} were published; "
                                   "the alias was not switched: run `rgcd publish` again")
        if not sample:
            return
        published = self._describe(name)
        # an approximate index may rank a near twin first: the room must then be among the first ten
        limit = 1 if published.index == "FLAT" else 10
        hits = self.client.search(name, data=[r.transferable for r in sample], anns_field="transferable",
                                  limit=limit, output_fields=["item_id"],
                                  search_params=published.search_params("transferable", limit),
                                  **self.dialect.check)
        for room, found in zip(sample, hits, strict=True):
            top = found[0] if found else None
            ids = [h["id"] if "id" in h else h["item_id"] for h in found]
            if top is None or (room.item_id not in ids and top["distance"] < 1 - 1e-5):
                missed = f" and itself not among the first {limit}" if limit > 1 else ""
                raise VectorStoreError(
                    f"collection {name}: the vector of {room.item_id} found "
                    f"{ids[0] if ids else 'nothing'} first{missed}; the alias was not switched: run "
                    "`rgcd publish` again")
        companion = self._holding(name, "retrieval")
        if companion != name:  # inner product has no "finds itself": the stored vectors must be the rooms'
            got = {r["item_id"]: r["retrieval"] for r in self.client.query(
                companion, filter=f"item_id in {_str_list([r.item_id for r in sample])}",
                output_fields=["retrieval"], **self.dialect.check)}
            for room in sample:
                stored = got.get(room.item_id)
                if stored is None or not _close(stored, room.retrieval):
                    raise VectorStoreError(f"collection {companion} lacks the retrieval vector of "
                                           f"{room.item_id}; the alias was not switched: run `rgcd publish`")

    def mark_published(self, name: str, published_rows: int, ended_until: int, started_from: int = 0) -> None:
        """Record a validated collection's figures (what readers and republishing check)."""
        self.client.alter_collection_properties(name, {
            "validated": "true", "published_rows": str(published_rows), "published_at": f"{time.time():.6f}",
            "ended_until": str(ended_until), "started_from": str(started_from)})

    def alias_target(self) -> str | None:
        """The collection the alias points at, or None before the first publish."""
        if self.dialect.alias_by_describe:
            from pymilvus.exceptions import MilvusException

            try:
                return self.client.describe_collection(self.alias)["collection_name"]
            except MilvusException:
                return None
        if self.alias not in self.client.list_aliases().get("aliases", []):
            return None
        return self.client.describe_alias(self.alias)["collection_name"]

    def switch_alias(self, name: str) -> None:
        """Point the readers' alias at `name` (one call; readers see the old or the new collection)."""
        if self.alias_target() is None:
            if self.dialect.alias_by_describe:  # an alias left behind by a dropped collection (2.3)
                with contextlib.suppress(Exception):
                    self.client.drop_alias(self.alias)
            self.client.create_alias(name, self.alias)
        else:
            self.client.alter_alias(name, self.alias)
        self._current = None

    def prune(self, keep: int) -> list[str]:
        """Drop validated collections beyond the newest `keep` (never the alias's), and unvalidated
        leftovers of other versions; returns the dropped names."""
        target = self.alias_target()
        published = self.published()
        good = [p for p in published if p.validated]
        keep_names = {p.collection for p in good[-keep:]} | {target}
        dropped = []
        for p in published:
            if p.collection not in keep_names:
                self.drop(p.collection)
                dropped.append(p.collection)
        return dropped

    # -- reader side -------------------------------------------------------------------------

    def current(self) -> Published:
        """The collection behind the alias (cached for `cache_s`); NotPublished before any publish."""
        now = time.monotonic()
        if self._current and now - self._current[0] < self.cache_s:
            return self._current[1]
        target = self.alias_target()
        if target is None:
            raise NotPublished(f"nothing is published under the Milvus alias {self.alias!r} at {self.uri}: "
                               "run `rgcd publish` first")
        for physical in self._physical(target):
            self._ensure_loaded(physical)
        current = self._describe(target)
        if current.layout != LAYOUT:
            # an older layout keeps every ended room in one partition and no oldest start: a past `at`
            # would walk them all and an `at` before any room could not be refused
            raise NotPublished(f"the published collection {target} has layout {current.layout}, older than "
                               f"this rgcd's ({LAYOUT}: ended rooms by start day, the oldest start kept): "
                               "run `rgcd publish` to rebuild it")
        self._current = (now, current)
        return current

    def for_version(self, model_version: str | None) -> Published | None:
        """The collection a query vector of `model_version` searches: the alias's when versions match,
        else the newest validated collection of that version (a publish in progress, a reader whose view
        of the alias is behind), else None (the caller reports a version mismatch)."""
        current = self.current()
        if model_version == current.model_version:
            return current
        now = time.monotonic()
        if not self._versions or now - self._versions[0] >= self.cache_s:
            by_version = {p.model_version: p for p in self.published() if p.validated and p.layout == LAYOUT}
            self._versions = (now, by_version)
        found = self._versions[1].get(model_version or "")
        if found:
            for physical in self._physical(found.collection):
                self._ensure_loaded(physical)
        return found

    def _ensure_loaded(self, name: str) -> None:
        # A collection reopened from disk starts released; searching it needs a load.
        if name not in self._loaded:
            self.client.load_collection(name)
            self._loaded.add(name)

    def _partitions(self, name: str) -> set[str]:
        """A collection's partitions (they do not change once it is published)."""
        if name not in self._partition_names:
            self._partition_names[name] = set(self.client.list_partitions(name))
        return self._partition_names[name]

    def _on_air(self, first_ms: int, last_ms: int) -> str:
        """The filter of rooms on air at some time in [first_ms, last_ms]."""
        open_end = "end_ms is null or " if self.dialect.nullable else ""
        return f"start_ms <= {last_ms} and ({open_end}end_ms > {first_ms})"

    def _window(self, current: Published, at_ms: int) -> tuple[list[str], str]:
        """Partitions to search at `at_ms` and the on-air filter over them."""
        expr = self._on_air(at_ms, at_ms)
        if current.only_on_air(at_ms):
            return [ON_AIR], expr
        if current.layout < "3":
            return [ON_AIR, ENDED], expr
        # a room on air at `at` started in (at - span, at]: the buckets of those days
        first, last = (at_ms - current.span_ms) // current.bucket_ms, at_ms // current.bucket_ms
        have = self._partitions(current.collection)
        return [ON_AIR, *[f"ended_{n}" for n in range(first, last + 1) if f"ended_{n}" in have]], expr

    def search(self, field: str, vector: list[float], at: datetime, k: int,
               published: Published | None = None) -> list[Hit]:
        """The k rooms on air at `at` nearest to `vector` in `field` (transferable or retrieval), in
        `published` (default: the alias's collection)."""
        return self.search_many([Search(field, vector, to_ms(at), k, published or self.current())])[0]

    def search_many(self, searches: list[Search]) -> list[list[Hit]]:
        """Each search's k rooms on air at its time, in order. Searches of one collection, field and
        set of partitions go to Milvus as one multi-vector search: a search costs a server mostly
        per call (proxy, query node, reduce), not per query vector (docs/serving.md, Speed)."""
        groups: dict[tuple, list[int]] = {}
        for n, s in enumerate(searches):
            partitions = tuple(self._window(s.published, s.at_ms)[0])
            # requests "now" batch across their ms; a past `at` only with the same `at`, since hours
            # apart the rooms on air differ and the group's hits would not hold each one's k
            when = None if s.published.only_on_air(s.at_ms) else s.at_ms
            groups.setdefault((s.published.collection, s.field, partitions, when), []).append(n)
        answers: list[list[Hit]] = [[] for _ in searches]
        for (_, _, partitions, _), members in groups.items():
            group = [searches[n] for n in members]
            for n, hits in zip(members, self._search_group(group, list(partitions)), strict=True):
                answers[n] = hits
        return answers

    def _search_group(self, group: list[Search], partitions: list[str]) -> list[list[Hit]]:
        """One Milvus search for searches that share collection, field and partitions.

        Their times may differ (requests "now" a few ms apart): the filter keeps the rooms on air at
        any of them, and each search keeps its own from the ranked hits. The hits are ranked by
        score, so when at least k of them were on air at the search's time, those k are its exact
        top k; when fewer were and Milvus filled the limit, that search runs again alone."""
        first, last = min(s.at_ms for s in group), max(s.at_ms for s in group)
        expr = self._on_air(first, last)
        limit = max(s.k for s in group) + (BATCH_MARGIN if first != last else 0)
        field, current = group[0].field, group[0].published
        found = self.client.search(self._holding(current.collection, field), data=[s.vector for s in group],
                                   anns_field=field, limit=limit, filter=expr, partition_names=partitions,
                                   output_fields=SCALARS[1:],
                                   search_params=current.search_params(field, limit), **self.dialect.read)
        answers = []
        for s, rows in zip(group, found, strict=True):
            # the primary key of a hit: `item_id` from Milvus Lite 3.x, `id` from a 2.3 server
            hits = [_hit(self._read(h["entity"] | {"item_id": h["id"] if "id" in h else h["item_id"]}),
                         float(h["distance"])) for h in rows]
            if first != last:
                hits = [h for h in hits if h.start_ms <= s.at_ms and (h.end_ms is None or h.end_ms > s.at_ms)]
                if len(hits) < s.k and len(rows) == limit:
                    hits = self._search_group([s], partitions)[0]
            answers.append(hits[: s.k])
        return answers

    def popular(self, at: datetime, k: int) -> list[Hit]:
        """The k most popular rooms on air at `at` (score = popularity), ties by item id."""
        current = self.current()
        partitions, expr = self._window(current, to_ms(at))
        rows = self.client.query(current.collection, filter=expr, partition_names=partitions,
                                 output_fields=SCALARS, limit=QUERY_WINDOW, **self.dialect.read)
        rows.sort(key=lambda r: (-r["popularity"], r["item_id"]))
        return [_hit(self._read(r), float(r["popularity"])) for r in rows[:k]]

    def rooms(self, item_ids: list[str], check: bool = False) -> dict[str, dict]:
        """Stored scalars of these rooms in the current collection, by item id (`check`: as of now on a
        server, for a write that depends on them)."""
        if not item_ids:
            return {}
        current = self.current()
        rows = self.client.query(current.collection, filter=f"item_id in {_str_list(item_ids)}",
                                 output_fields=SCALARS,
                                 **(self.dialect.check if check else self.dialect.read))
        return {r["item_id"]: self._read(r) for r in rows}

    def author_popularity(self, author_id: int) -> float:
        """A room's popularity is its author's: taken from any of the author's rooms, else 0."""
        current = self.current()
        rows = self.client.query(current.collection, filter=f"author_id == {int(author_id)}",
                                 output_fields=["popularity"], limit=1, **self.dialect.read)
        return float(rows[0]["popularity"]) if rows else 0.0

    def upsert_on_air(self, rooms: list[Room]) -> None:
        """Put rooms that went on air into the current collection's `on_air` partition.

        Raises ValueError naming a room the collection holds as ended (a new broadcast is a new room).
        """
        current = self.current()
        ended = [i for i, r in self.rooms([r.item_id for r in rooms], check=True).items()
                 if r["end_ms"] is not None]
        if ended:
            raise ValueError(", ".join(sorted(ended)))
        self._write(current.collection, [r.row() for r in rooms], ON_AIR, upsert=True)

    def end(self, item_id: str, at: datetime) -> dict | None:
        """Set a room's end to `at` (in place, see the module docstring): its author_id, start and end;
        None if it had ended already.

        Raises KeyError when the current collection does not hold the room.
        """
        current = self.current()
        row: dict = {}
        for physical, fields in self._physical(current.collection).items():
            got = self.client.query(physical, filter=f"item_id == {_str(item_id)}",
                                    output_fields=[*SCALARS, *fields], **self.dialect.check)
            if not got:
                raise KeyError(item_id)
            row |= self._read(got[0])
        if row["end_ms"] is not None:
            return None
        end_ms = max(to_ms(at), row["start_ms"] + 1)  # a room is on air for at least 1 ms
        row = {k: row[k] for k in (*SCALARS, *METRICS)} | {"end_ms": end_ms}
        row["transferable"], row["retrieval"] = list(row["transferable"]), list(row["retrieval"])
        self._write(current.collection, [row], ON_AIR, upsert=True)
        return {"author_id": int(row["author_id"]), "start": from_ms(row["start_ms"]), "end": from_ms(end_ms)}


def _index_of(recorded: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    """A collection's index and search parameters as `create` recorded them (none: FLAT)."""
    if not recorded:
        return "FLAT", ()
    index = json.loads(recorded)
    return index["type"], tuple(sorted(index["search"].items()))


def _hit(row: dict, score: float) -> Hit:
    return Hit(row["item_id"], int(row["author_id"]), score, float(row["popularity"]), int(row["start_ms"]),
               None if row["end_ms"] is None else int(row["end_ms"]),
               {f: row.get(f) or "" for f in KNOWLEDGE})


def _close(a: list[float], b: list[float]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-4


def _str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _str_list(values: list[str]) -> str:
    return "[" + ", ".join(_str(v) for v in values) + "]"


def is_server(uri: str) -> bool:
    """Whether a Milvus URI names a server (else a Milvus Lite file)."""
    return uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


LITE_HELD_ADVICE = (
    "Milvus Lite allows one process per file. To retrieve or start/end rooms while `rgcd serve` runs, "
    "send the request to it over HTTP. To publish, stop `rgcd serve` (and any other rgcd command on "
    "this workspace), publish, then start it again; to publish without downtime, serve the vectors "
    "from a Milvus server (`milvus-lite server --data-dir D --port P`, retrieval.milvus_uri).")


def refuse_lite_held(ws: Workspace, settings: Settings) -> None:
    """VectorStoreError at once when the workspace's Milvus Lite file is another process's (a server
    URI: nothing to check)."""
    uri = milvus_uri(ws, settings)
    if not is_server(uri):
        refuse_lite_file_held_elsewhere(uri)


def refuse_lite_file_held_elsewhere(uri: str) -> None:
    """VectorStoreError at once when another process holds the Milvus Lite file's lock.

    Milvus Lite takes an advisory flock on <file>/LOCK while a process has the file open; pymilvus
    meets a held lock only after a long wait (50-70 s measured) and a traceback. A file this process
    opened already (its own server) is not probed: a second flock from the same process would fail.
    """
    import fcntl

    path = Path(uri).resolve()
    lock = path / "LOCK"
    if _LITE_CLIENTS.get(str(path), 0) > 0 or not lock.exists():
        return
    from milvus_lite.server_manager import server_manager_instance

    if str(path) in server_manager_instance._servers:  # opened by this process without a client count
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise VectorStoreError(f"the Milvus Lite file {uri} is open in another process. "
                               f"{LITE_HELD_ADVICE}") from None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_hint(uri: str, err: Exception) -> str:
    if is_server(uri):
        return (f"cannot reach the Milvus server at {uri} ({err}); start it (`rgcd milvus start`, or "
                "`milvus-lite server --data-dir D --port P`) or fix retrieval.milvus_uri")
    return f"cannot open the Milvus Lite file {uri} ({err}). {LITE_HELD_ADVICE}"
