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
by publication time in `ended`. Milvus Lite 3.x walks every primary key of what it searches in
Python, so a query costs what the searched partitions hold: a request at or after the last end known
at publication (`ended_until`; every request "now") searches only `on_air`; a historical request
also searches `ended`. The on-air filter applies to both, so a room that ends between publications
stays in `on_air` with its end time set (its row is updated in place: Milvus Lite versions a primary
key across partitions, so a row moved by delete + insert would come back in the old partition) and
leaves every later request's candidates; the next publication starts from a clean collection.

Talks to Milvus through pymilvus' MilvusClient only (Feast's Milvus online store mismatches ids and
features on search, STACK.md); the same code runs on the Lite file and on a server URI.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rgcd.config import Settings, Workspace
from rgcd.errors import RgcdError

ON_AIR, ENDED = "on_air", "ended"
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
LAYOUT = "2"  # 2: the teacher's knowledge beside the vectors
# Milvus caps one query's result window at 16,384 rows.
QUERY_WINDOW = 16_384



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

    def __init__(self, uri: str, alias: str, token: str = "", cache_s: float = 1.0) -> None:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        # pymilvus logs every server-side error with its stack before raising it (and sets its own
        # level on import); the errors become messages here, so its logger stays quiet.
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        # Milvus Lite's in-process gRPC server does not implement AllocTimestamp; pymilvus asks for
        # it on some writes, falls back, and grpc logs the refusal as an ERROR with a traceback.
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        self.uri, self.alias, self.cache_s = uri, alias, cache_s
        try:
            self.client = MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
        except MilvusException as err:
            raise VectorStoreError(_open_hint(uri, err)) from None
        except OSError as err:
            raise VectorStoreError(_open_hint(uri, err)) from None
        self._current: tuple[float, Published] | None = None
        self._loaded: set[str] = set()
        self._lite = None if is_server(uri) else str(Path(uri).resolve())
        if self._lite:
            _LITE_CLIENTS[self._lite] = _LITE_CLIENTS.get(self._lite, 0) + 1

    @classmethod
    def connect(cls, ws: Workspace, settings: Settings) -> RoomVectors:
        """The store `retrieval.milvus_uri` names (default: the workspace's Milvus Lite file)."""
        r = settings.retrieval
        return cls(milvus_uri(ws, settings), r.alias, r.milvus_token, r.cache_s)

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
            if name.startswith(PREFIX):
                out.append(self._describe(name))
        return sorted(out, key=lambda p: (p.published_at, p.collection))

    def _describe(self, name: str) -> Published:
        props = self.client.describe_collection(name).get("properties", {})
        return Published(name, props.get("model_version", ""), int(props.get("published_rows", 0)),
                         float(props.get("published_at", 0)), props.get("validated") == "true",
                         int(props.get("ended_until", 0)), props.get("layout", "1"))

    def create(self, model_version: str, dim_transferable: int, dim_retrieval: int,
               name: str | None = None) -> str:
        """A fresh, empty collection for `model_version` (default name `rooms_<version>`; a leftover of
        a killed publish under that name is dropped)."""
        from pymilvus import DataType

        name = name or collection_name(model_version)
        if self.client.has_collection(name):
            self.client.drop_collection(name)
            self._loaded.discard(name)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False,
                                           description=f"live rooms of model version {model_version}")
        schema.add_field("item_id", DataType.VARCHAR, is_primary=True, max_length=128)
        schema.add_field("author_id", DataType.INT64)
        schema.add_field("start_ms", DataType.INT64)
        schema.add_field("end_ms", DataType.INT64, nullable=True)
        schema.add_field("popularity", DataType.FLOAT)
        for field in KNOWLEDGE:
            schema.add_field(field, DataType.VARCHAR, max_length=KNOWLEDGE_LENGTH)
        schema.add_field("transferable", DataType.FLOAT_VECTOR, dim=dim_transferable)
        schema.add_field("retrieval", DataType.FLOAT_VECTOR, dim=dim_retrieval)
        index = self.client.prepare_index_params()
        for field, metric in METRICS.items():
            # FLAT: exact; what the rooms on air hold is small, and recall is the contract.
            index.add_index(field, index_type="FLAT", metric_type=metric)
        self.client.create_collection(name, schema=schema, index_params=index,
                                      properties={"model_version": model_version, "validated": "false",
                                                  "layout": LAYOUT})
        for partition in (ON_AIR, ENDED):
            self.client.create_partition(name, partition)
        self._loaded.add(name)
        return name

    def insert(self, name: str, rooms: list[Room], batch: int) -> None:
        """Insert rooms into their partitions, then flush (unflushed rows are searched brute force)."""
        for partition, part in ((ON_AIR, [r for r in rooms if r.end is None]),
                                (ENDED, [r for r in rooms if r.end is not None])):
            for start in range(0, len(part), batch):
                chunk = [r.row() for r in part[start:start + batch]]
                self.client.insert(name, chunk, partition_name=partition)
        self.client.flush(name)

    def count(self, name: str, partition: str | None = None) -> int:
        """Rows in a collection (or one of its partitions)."""
        self._ensure_loaded(name)
        if partition:
            # Milvus Lite 3.2.2's count(*) ignores partition_names (it counts the whole collection);
            # the partition's statistics are its own
            return int(self.client.get_partition_stats(name, partition)["row_count"])
        got = self.client.query(name, filter="", output_fields=["count(*)"])
        return int(got[0]["count(*)"])

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
        hits = self.client.search(name, data=[r.transferable for r in sample], anns_field="transferable",
                                  limit=1, output_fields=["item_id"],
                                  search_params={"metric_type": METRICS["transferable"]})
        for room, found in zip(sample, hits, strict=True):
            top = found[0] if found else None
            if top is None or (top["item_id"] != room.item_id and top["distance"] < 1 - 1e-5):
                raise VectorStoreError(
                    f"collection {name}: the vector of {room.item_id} found "
                    f"{top['item_id'] if top else 'nothing'} first; the alias was not switched: run "
                    "`rgcd publish` again")

    def mark_published(self, name: str, published_rows: int, ended_until: int) -> None:
        """Record a validated collection's figures (what readers and republishing check)."""
        self.client.alter_collection_properties(name, {
            "validated": "true", "published_rows": str(published_rows), "published_at": f"{time.time():.6f}",
            "ended_until": str(ended_until)})

    def alias_target(self) -> str | None:
        """The collection the alias points at, or None before the first publish."""
        if self.alias not in self.client.list_aliases().get("aliases", []):
            return None
        return self.client.describe_alias(self.alias)["collection_name"]

    def switch_alias(self, name: str) -> None:
        """Point the readers' alias at `name` (one call; readers see the old or the new collection)."""
        if self.alias_target() is None:
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
                self.client.drop_collection(p.collection)
                self._loaded.discard(p.collection)
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
        self._ensure_loaded(target)
        current = self._describe(target)
        self._current = (now, current)
        return current

    def _ensure_loaded(self, name: str) -> None:
        # A collection reopened from disk starts released; searching it needs a load.
        if name not in self._loaded:
            self.client.load_collection(name)
            self._loaded.add(name)

    def _window(self, current: Published, at_ms: int) -> tuple[list[str], str]:
        """Partitions to search at `at_ms` and the on-air filter over them."""
        expr = f"start_ms <= {at_ms} and (end_ms is null or end_ms > {at_ms})"
        # every room of `ended` had ended by then: the `on_air` partition suffices
        return ([ON_AIR] if at_ms >= current.ended_until else [ON_AIR, ENDED]), expr

    def search(self, field: str, vector: list[float], at: datetime, k: int) -> list[Hit]:
        """The k rooms on air at `at` nearest to `vector` in `field` (transferable or retrieval)."""
        current = self.current()
        partitions, expr = self._window(current, to_ms(at))
        found = self.client.search(current.collection, data=[vector], anns_field=field, limit=k, filter=expr,
                                   partition_names=partitions, output_fields=SCALARS[1:],
                                   search_params={"metric_type": METRICS[field]})
        return [_hit(h["entity"] | {"item_id": h["item_id"]}, float(h["distance"])) for h in found[0]]

    def popular(self, at: datetime, k: int) -> list[Hit]:
        """The k most popular rooms on air at `at` (score = popularity), ties by item id."""
        current = self.current()
        partitions, expr = self._window(current, to_ms(at))
        rows = self.client.query(current.collection, filter=expr, partition_names=partitions,
                                 output_fields=SCALARS, limit=QUERY_WINDOW)
        rows.sort(key=lambda r: (-r["popularity"], r["item_id"]))
        return [_hit(r, float(r["popularity"])) for r in rows[:k]]

    def rooms(self, item_ids: list[str]) -> dict[str, dict]:
        """Stored scalars of these rooms in the current collection, by item id."""
        if not item_ids:
            return {}
        current = self.current()
        rows = self.client.query(current.collection, filter=f"item_id in {_str_list(item_ids)}",
                                 output_fields=SCALARS)
        return {r["item_id"]: r for r in rows}

    def author_popularity(self, author_id: int) -> float:
        """A room's popularity is its author's: taken from any of the author's rooms, else 0."""
        current = self.current()
        rows = self.client.query(current.collection, filter=f"author_id == {int(author_id)}",
                                 output_fields=["popularity"], limit=1)
        return float(rows[0]["popularity"]) if rows else 0.0

    def upsert_on_air(self, rooms: list[Room]) -> None:
        """Put rooms that went on air into the current collection's `on_air` partition.

        Raises ValueError naming a room the collection holds as ended (a new broadcast is a new room).
        """
        current = self.current()
        ended = [i for i, r in self.rooms([r.item_id for r in rooms]).items() if r["end_ms"] is not None]
        if ended:
            raise ValueError(", ".join(sorted(ended)))
        self.client.upsert(current.collection, [r.row() for r in rooms], partition_name=ON_AIR)

    def end(self, item_id: str, at: datetime) -> dict | None:
        """Set a room's end to `at` (in place, see the module docstring): its author_id, start and end;
        None if it had ended already.

        Raises KeyError when the current collection does not hold the room.
        """
        current = self.current()
        got = self.client.query(current.collection, filter=f"item_id == {_str(item_id)}",
                                output_fields=[*SCALARS, "transferable", "retrieval"])
        if not got:
            raise KeyError(item_id)
        row = got[0]
        if row["end_ms"] is not None:
            return None
        end_ms = max(to_ms(at), row["start_ms"] + 1)  # a room is on air for at least 1 ms
        row = {k: row[k] for k in (*SCALARS, "transferable", "retrieval")} | {"end_ms": end_ms}
        row["transferable"], row["retrieval"] = list(row["transferable"]), list(row["retrieval"])
        self.client.upsert(current.collection, [row], partition_name=ON_AIR)
        return {"author_id": int(row["author_id"]), "start": from_ms(row["start_ms"]), "end": from_ms(end_ms)}


def _hit(row: dict, score: float) -> Hit:
    return Hit(row["item_id"], int(row["author_id"]), score, float(row["popularity"]), int(row["start_ms"]),
               None if row["end_ms"] is None else int(row["end_ms"]),
               {f: row.get(f) or "" for f in KNOWLEDGE})


def _str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _str_list(values: list[str]) -> str:
    return "[" + ", ".join(_str(v) for v in values) + "]"


def is_server(uri: str) -> bool:
    """Whether a Milvus URI names a server (else a Milvus Lite file)."""
    return uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def _open_hint(uri: str, err: Exception) -> str:
    if is_server(uri):
        return (f"cannot reach the Milvus server at {uri} ({err}); start it (e.g. `milvus-lite server "
                "--data-dir D --port P`) or fix retrieval.milvus_uri")
    return (f"cannot open the Milvus Lite file {uri} ({err}); Milvus Lite allows one process per file: "
            "if `rgcd serve` is running, send the request to it over HTTP, or serve the file with "
            "`milvus-lite server --data-dir D --port P` and set retrieval.milvus_uri")
