"""Rooms going on air and off air, between training runs.

A room that starts gets vectors of the published model version, is put into the published
collection's `on_air` partition (Milvus) and pushed into Feast's online store (item_embeddings_push
for its vectors, live_schedule_push for its on-air interval), and is retrievable as soon as these
calls return. A room that ends gets its end time (its row is updated in place, see
embeddings/milvus_store.py; live_schedule is pushed again), so it leaves the candidates of every later
request. Both are recorded in <workspace>/feature_data/rooms_started.parquet (the room's inputs and
interval), so that the next `rgcd publish` encodes it with the version it publishes: a room that went
on air between two publishes is in the next version, not only in the collection it was pushed to.

Vectors of a new room: encoded from its inputs by the student (chorus states, training/distill.py)
and the stage-2 model `rgcd publish` published (rgcd.training.published_model: transferable,
residual, retrieval); `RoomEncoder` loads both once. A room may instead arrive with precomputed
`transferable`, `residual` and `retrieval` vectors and their `model_version` (e.g. from an encoding
job elsewhere). Either way the version must be the published collection's, or the room is refused.
Room files: a JSON list of rooms (or {"rooms": [...]}), JSON lines, or parquet; a room has `live_id`
(or `item_id` 'live:<id>'), `author_id`, optional `start_timestamp` (ISO 8601 or epoch ms; default
now), and what the student reads: `live_name`, `category_l1`..`category_l4` (the author's usual
short-video path) and `mm_embedding` (the room's 64-d multimodal vector), all optional.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rgcd.embeddings.milvus_store import Room
from rgcd.embeddings.retrieval import (
    BadQuery,
    Retriever,
    UnknownQuery,
    VersionMismatch,
    echo,
    parse_at,
    parse_id,
)

VECTOR_FIELDS = ("transferable", "residual", "retrieval")
PUSH_SOURCE = "item_embeddings_push"
SCHEDULE_PUSH = "live_schedule_push"
STARTED = "rooms_started"
# What the student reads of a room (kept in the log of started rooms, for the next publish).
INPUTS = ("live_name", "category_l1", "category_l2", "category_l3", "category_l4")
MAX_ROOMS = 1_000  # per request or file
MAX_VECTOR = 4_096  # values in any vector a request may send
TEXT_CHARS = 512  # a room's name or category
UNIT_TOLERANCE = 1e-3  # |norm - 1| of a vector the published model wrote (float32 rounding is ~1e-7)


class RoomEncoder:
    """Student (chorus states) + the published stage-2 model: a room's inputs -> its vectors."""

    def __init__(self, ws, settings, version: str | None = None) -> None:
        """The published model (default), or stage 2's `version` of it (publish, before it switches)."""
        model_dir = ws.student / "model"
        if not model_dir.exists():  # before importing torch: a service without a student starts faster
            raise BadQuery(f"{model_dir} is missing: run `rgcd distill` and `rgcd transfer` before rooms "
                           "are encoded, or give precomputed vectors")
        import torch

        from rgcd.training.published_model import load_published
        from rgcd.training.student import ChorusStudent, encode_items

        try:
            self.published = load_published(ws, version)
        except FileNotFoundError as err:
            raise BadQuery(f"{err}; or give the rooms precomputed vectors") from None
        self.student = ChorusStudent.from_pretrained(model_dir).eval()
        self.batch = settings.student.encode_batch_size
        self._encode_items, self._torch = encode_items, torch
        self.model_version = self.published.model_version
        self.mm_length = self.student.cfg.mm_dims.get("live")  # what the student reads of a room

    def encode(self, item_ids: list[str], rooms: list[dict]) -> list[dict[str, list[float]]]:
        """transferable, residual, retrieval of each room, in order."""
        items = [{"item_id": i, "domain": "live", "title": r.get("live_name") or r.get("title") or "",
                  "body_text": "", **{f"category_l{n}": r.get(f"category_l{n}") or "" for n in range(1, 5)},
                  "mm_embedding": r.get("mm_embedding")} for i, r in zip(item_ids, rooms, strict=True)]
        with self._torch.no_grad():
            states = self._encode_items(self.student, items, self.batch).numpy()
        out = self.published.encode(states, ["live"] * len(items), [int(r["author_id"]) for r in rooms],
                                    [r.get("mm_embedding") for r in rooms])
        return [{f: [float(x) for x in out[f][n]] for f in VECTOR_FIELDS} for n in range(len(items))]


@dataclass(frozen=True)
class RoomsReport:
    """Rooms that went on air, and how long it took until they were retrievable."""

    item_ids: tuple[str, ...]
    model_version: str
    vectors: str
    seconds: float

    def one_line(self) -> str:
        """Figures for the command line."""
        return (f"{len(self.item_ids)} room(s) on air ({', '.join(self.item_ids[:5])}"
                f"{', ...' if len(self.item_ids) > 5 else ''}) with {self.vectors} of {self.model_version}, "
                f"retrievable after {self.seconds:.2f}s")


def read_rooms_file(path: Path) -> list[dict]:
    """Rooms from a JSON list / {"rooms": [...]} / JSON lines / parquet file (BadQuery when it is none)."""
    if not path.is_file():
        raise BadQuery(f"{path} is not a file: give a JSON, JSON-lines or parquet file of rooms")
    if path.suffix == ".parquet":
        import polars as pl

        try:
            return parse_rooms_payload(pl.read_parquet(path).to_dicts())
        except (pl.exceptions.PolarsError, OSError) as err:
            raise BadQuery(f"{path} is not a readable parquet file ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:200] if str(err) else 'no detail'})") from None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise BadQuery(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}): give a JSON, JSON-lines "
                       "or parquet file of rooms (save it as UTF-8)") from None
    except OSError as err:
        raise BadQuery(f"{path} cannot be read ({err.strerror})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise BadQuery(f"{path} nests JSON too deeply to be rooms") from None
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise BadQuery(f"{path} is neither JSON nor JSON lines ({err}); see `rgcd rooms start -h`"
                           ) from None
    return parse_rooms_payload(data)


def parse_rooms_payload(data: object) -> list[dict]:
    """The list of rooms in a request body or file (a list, one room, or {"rooms": [...]})."""
    if isinstance(data, dict):
        data = data.get("rooms", [data])
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise BadQuery('give one room object, a list of rooms or {"rooms": [...]}, each with live_id and '
                       "author_id")
    if len(data) > MAX_ROOMS:
        raise BadQuery(f"{len(data):,} rooms in one request: send at most {MAX_ROOMS:,} at a time")
    return data


def _item_id(room: dict) -> str:
    """The room's 'live:<live_id>' from item_id or live_id (both given: they must agree)."""
    item_id = room.get("item_id")
    if item_id is not None:
        if not isinstance(item_id, str) or not item_id.startswith("live:"):
            raise BadQuery(f"item_id {echo(item_id)}: a room is 'live:<live_id>'")
        live_id = parse_id(item_id[5:], "the live_id of item_id")
        if room.get("live_id") is not None and parse_id(room["live_id"], "live_id") != live_id:
            raise BadQuery(f"item_id {echo(item_id)} and live_id {echo(room['live_id'])} differ: give one")
        return f"live:{live_id}"
    if room.get("live_id") is None:
        raise BadQuery(f"a room needs live_id (an integer) or item_id 'live:<id>'; got {echo(room)}")
    return f"live:{parse_id(room['live_id'], 'live_id')}"


def _precomputed(room: dict) -> bool:
    return any(room.get(f) is not None for f in (*VECTOR_FIELDS, "model_version"))


def _numbers(value: object, what: str, length: int | None, unit: bool) -> list[float]:
    """A vector from a request: a list of finite numbers, of `length` (None: any up to 4,096), of
    norm 1 when `unit` (the published model writes unit vectors: training/published_model.py)."""
    if not isinstance(value, list | tuple) or not value or len(value) > MAX_VECTOR:
        raise BadQuery(f"{what} must be a list of numbers (1..{MAX_VECTOR:,} of them)")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        raise BadQuery(f"{what} must hold numbers only")
    try:
        numbers = [float(x) for x in value]
    except OverflowError:  # an integer of hundreds of digits
        numbers = [math.inf]
    if not all(math.isfinite(x) for x in numbers):
        raise BadQuery(f"{what} holds a value that is not finite (NaN or infinity)")
    if length is not None and len(numbers) != length:
        raise BadQuery(f"{what} has {len(numbers)} values; the published model writes {length}")
    if unit:
        norm = math.sqrt(math.fsum(x * x for x in numbers))
        if abs(norm - 1.0) > UNIT_TOLERANCE:
            raise BadQuery(f"{what} has norm {norm:.4g}; the published model writes unit vectors (norm 1 "
                           f"within {UNIT_TOLERANCE}): normalise it")
    return numbers


def _vectors(room: dict, item_id: str, version: str, dims: dict[str, int | None]) -> dict[str, list[float]]:
    missing = [f for f in (*VECTOR_FIELDS, "model_version") if room.get(f) is None]
    if missing:
        raise BadQuery(f"room {item_id} has precomputed vectors but lacks {', '.join(missing)}: give all "
                       "of transferable, residual, retrieval and model_version, or none (then it is encoded)")
    if room["model_version"] != version:
        raise VersionMismatch(f"room {item_id} comes with vectors of {echo(room['model_version'])} but the "
                              f"published rooms are {version!r}: encode it with the published version")
    return {f: _numbers(room[f], f"room {item_id}: {f}", dims.get(f), unit=True) for f in VECTOR_FIELDS}


def _start(room: dict, item_id: str, now: datetime) -> datetime:
    """A room's start: ISO 8601 / epoch ms (a string or a number), a datetime (parquet), or now."""
    value = room.get("start_timestamp")
    if value is None:
        return now
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadQuery(f"room {item_id}: start_timestamp {echo(value)} is not a time (ISO 8601 or epoch ms)")
    return parse_at(value)


def _inputs(room: dict, item_id: str, mm_length: int | None) -> dict:
    """What the student reads of a room, checked: short strings, and a finite multimodal vector."""
    out = {}
    for f in INPUTS:
        value = room.get(f)
        if value is not None and (not isinstance(value, str) or len(value) > TEXT_CHARS):
            raise BadQuery(f"room {item_id}: {f} must be a string of at most {TEXT_CHARS} characters")
        out[f] = value
    mm = room.get("mm_embedding")
    out["mm_embedding"] = None if mm is None else _numbers(mm, f"room {item_id}: mm_embedding", mm_length,
                                                           unit=False)
    return out


@dataclass(frozen=True)
class _Checked:
    """A room that passed every check: what is written for it."""

    item_id: str
    author_id: int
    start: datetime
    inputs: dict
    vectors: dict[str, list[float]] | None


def check_rooms(retriever: Retriever, rooms: list[dict], published, now: datetime,
                encoder: RoomEncoder | None) -> list[_Checked]:
    """Every room checked before anything is written (BadQuery / VersionMismatch naming the room):
    ids in range and unique, author, a start the published rooms cover, vectors of the published
    model's lengths, finite and of norm 1, and not a room that already went off air."""
    if len(rooms) > MAX_ROOMS:
        raise BadQuery(f"{len(rooms):,} rooms in one request: send at most {MAX_ROOMS:,} at a time")
    dims = retriever.vector_dims(published)
    mm_length = encoder.mm_length if encoder is not None else None
    out, seen = [], set()
    for room in rooms:
        item_id = _item_id(room)
        if item_id in seen:
            raise BadQuery(f"room {item_id} appears twice in one request")
        seen.add(item_id)
        if room.get("author_id") is None:
            raise BadQuery(f"room {item_id} needs author_id (an integer)")
        author = parse_id(room["author_id"], f"room {item_id}: author_id")
        start = retriever.check_time(_start(room, item_id, now), published,
                                     f"room {item_id}: start_timestamp")
        vectors = _vectors(room, item_id, published.model_version, dims) if _precomputed(room) else None
        out.append(_Checked(item_id, author, start, _inputs(room, item_id, mm_length), vectors))
    ended = sorted(i for i, r in retriever.rooms.rooms(sorted(seen)).items() if r["end_ms"] is not None)
    if ended:
        raise BadQuery(f"room(s) {', '.join(ended[:10])} already went off air; a new broadcast needs a new "
                       "live_id")
    return out


def started_path(ws) -> Path:
    """The log of rooms started (and ended) between publishes (feature_data/rooms_started.parquet)."""
    return ws.feature_data / f"{STARTED}.parquet"


def read_started(ws):
    """The log of started rooms (polars; None when no room was started)."""
    import polars as pl

    path = started_path(ws)
    return pl.read_parquet(path) if path.exists() else None


def _record(ws, rows: list[dict]) -> None:
    """Upsert rooms into the log of started rooms (a room's latest row wins)."""
    import polars as pl

    from rgcd.atomic import write_parquet_atomic

    schema = {"item_id": pl.String, "live_id": pl.Int64, "author_id": pl.Int64,
              "start_timestamp": pl.Datetime("us", "UTC"), "end_timestamp": pl.Datetime("us", "UTC"),
              **{f: pl.String for f in INPUTS}, "mm_embedding": pl.List(pl.Float32),
              "created_timestamp": pl.Datetime("us", "UTC")}
    new = pl.DataFrame(rows, schema=schema)
    old = read_started(ws)
    if old is not None:
        new = pl.concat([old.filter(~pl.col("item_id").is_in(new["item_id"].implode())), new])
    write_parquet_atomic(new.sort("item_id"), started_path(ws))


def _push_schedule(retriever: Retriever, rows: list[dict]) -> None:
    import pandas as pd
    from feast.data_source import PushMode

    frame = pd.DataFrame({
        "item_id": [r["item_id"] for r in rows], "live_id": [r["live_id"] for r in rows],
        "author_id": [r["author_id"] for r in rows],
        "start_timestamp": pd.to_datetime([r["start_timestamp"] for r in rows], utc=True),
        "end_timestamp": pd.to_datetime([r["end_timestamp"] for r in rows], utc=True),
        "event_timestamp": pd.to_datetime([r["start_timestamp"] for r in rows], utc=True),
        "created_timestamp": pd.to_datetime([r["created_timestamp"] for r in rows], utc=True)})
    retriever.store.push(SCHEDULE_PUSH, frame, to=PushMode.ONLINE)


def _room_knowledge(retriever: Retriever, item_ids: list[str]) -> list[dict[str, str]]:
    """The teacher's knowledge of these rooms in the online store ('' where none: a new room)."""
    from rgcd.embeddings.milvus_store import KNOWLEDGE
    from rgcd.embeddings.retrieval import ITEM_SERVICE

    rows = retriever.online(ITEM_SERVICE, "item_id", item_ids)
    return [{f: r[f"item_reasoning__{f}"] or "" for f in KNOWLEDGE} for r in rows]


def start_rooms(retriever: Retriever, rooms: list[dict], encoder: RoomEncoder | None = None) -> RoomsReport:
    """Put rooms on air: every room checked first (nothing is written for a request with one bad
    room), vectors given or encoded, then Feast's online store, the log of started rooms and, last,
    Milvus (from which the rooms are candidates). A write that fails undoes the ones before it.
    `encoder` is loaded here when a room needs encoding and none is given."""
    import pandas as pd

    t0 = time.perf_counter()
    published = retriever.published()
    now = datetime.now(UTC)
    checked = check_rooms(retriever, rooms, published, now, encoder)
    to_encode = [n for n, c in enumerate(checked) if c.vectors is None]
    vectors = [c.vectors for c in checked]
    if to_encode:
        if encoder is None:
            encoder = RoomEncoder(retriever.ws, retriever.settings)
            for n in to_encode:  # checked above only where an encoder was given
                mm = checked[n].inputs["mm_embedding"]
                if mm is not None:
                    _numbers(mm, f"room {checked[n].item_id}: mm_embedding", encoder.mm_length, unit=False)
        if encoder.model_version != published.model_version:
            raise VersionMismatch(f"the published stage-2 model is {encoder.model_version!r} but the "
                                  f"published rooms are {published.model_version!r}: run `rgcd publish`")
        inputs = [{**checked[n].inputs, "author_id": checked[n].author_id} for n in to_encode]
        encoded = encoder.encode([checked[n].item_id for n in to_encode], inputs)
        dims = retriever.vector_dims(published)
        for n, v in zip(to_encode, encoded, strict=True):  # what the model wrote passes the same checks
            vectors[n] = {f: _numbers(v[f], f"the encoded {f} of {checked[n].item_id}", dims.get(f), True)
                          for f in VECTOR_FIELDS}
    how = ("precomputed vectors" if not to_encode else "encoded vectors (student + stage 2)"
           if len(to_encode) == len(rooms) else "given and encoded vectors")
    ids = [c.item_id for c in checked]
    knowledge = _room_knowledge(retriever, ids)
    made = [Room(c.item_id, c.author_id, c.start, None, retriever.rooms.author_popularity(c.author_id),
                 v["transferable"], v["retrieval"], known)
            for c, v, known in zip(checked, vectors, knowledge, strict=True)]
    frame = pd.DataFrame({
        "item_id": ids,
        **{f: [v[f] for v in vectors] for f in VECTOR_FIELDS},
        "model_version": [published.model_version] * len(made),
        "event_timestamp": [r.start for r in made],
        "created_timestamp": [now] * len(made),
    })
    log = [{"item_id": c.item_id, "live_id": int(c.item_id[5:]), "author_id": c.author_id,
            "start_timestamp": c.start, "end_timestamp": None, **c.inputs, "created_timestamp": now}
           for c in checked]
    _write_all_or_nothing(retriever, ids, [
        ("online vectors", lambda: retriever.store.push(PUSH_SOURCE, frame, to=_online())),
        ("online schedule", lambda: _push_schedule(retriever, log)),
        ("log of started rooms", lambda: _record(retriever.ws, log)),
        ("Milvus", lambda: retriever.rooms.upsert_on_air(made)),
    ])
    return RoomsReport(tuple(ids), published.model_version, how, time.perf_counter() - t0)


def _online():
    from feast.data_source import PushMode

    return PushMode.ONLINE


def _write_all_or_nothing(retriever: Retriever, item_ids: list[str], steps: list[tuple[str, object]]) -> None:
    """Run the write steps in order; when one fails, put back what the earlier ones changed (the
    online rows of these rooms in the views the pushes feed, the log of started rooms) and raise.
    Milvus comes last, so a failure never leaves a room among the candidates."""
    import logging

    online = OnlineRows(retriever.store, [PUSH_SOURCE, SCHEDULE_PUSH], item_ids)
    old_log = read_started(retriever.ws)
    done: list[str] = []
    try:
        for name, step in steps:
            step()
            done.append(name)
    except Exception:
        try:
            online.restore()
            if "log of started rooms" in done:
                _restore_log(retriever.ws, old_log)
        except Exception:  # the first error is the one to report; this one goes to the log
            logging.getLogger(__name__).exception("rooms start: undoing a failed write failed too")
        raise


def _restore_log(ws, old) -> None:
    from rgcd.atomic import write_parquet_atomic

    if old is None:
        started_path(ws).unlink(missing_ok=True)
    else:
        write_parquet_atomic(old, started_path(ws))


class OnlineRows:
    """The online rows of some rooms in the views that push sources feed, as they are now, to be
    written back if a later write fails. Rows that did not exist are written back empty (read as
    missing). Exact with the SQLite store; Redis keeps the newer row (it refuses older timestamps),
    which is harmless: a room Milvus does not hold is never a candidate."""

    def __init__(self, store, push_sources: list[str], item_ids: list[str]) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self.store = store
        self.views = [v for v in store.list_feature_views()
                      if v.stream_source is not None and v.stream_source.name in push_sources]
        self.keys = [EntityKey(join_keys=["item_id"], entity_values=[Value(string_val=i)]) for i in item_ids]
        provider = store._get_provider()  # Feast's own online read/write, to keep timestamps and values exact
        self.saved = {v.name: provider.online_read(store.config, v, self.keys) for v in self.views}

    def restore(self) -> None:
        from feast.protos.feast.types.Value_pb2 import Value

        provider = self.store._get_provider()
        for view in self.views:
            rows = []
            for key, (ts, values) in zip(self.keys, self.saved[view.name], strict=True):
                if ts is None:  # did not exist: empty values, read back as missing
                    ts, values = datetime.fromtimestamp(0, tz=UTC), {f.name: Value() for f in view.features}
                rows.append((key, values, ts, None))
            provider.online_write_batch(self.store.config, view, rows, progress=None)


def end_room(retriever: Retriever, item_id: str, at: datetime | None = None) -> bool:
    """Take a room off air at `at` (default now); False if it had ended already."""
    if not item_id.startswith("live:"):
        raise BadQuery(f"{echo(item_id)}: a room is 'live:<live_id>'")
    item_id = f"live:{parse_id(item_id[5:], 'the live_id of the room')}"
    if at is not None:
        retriever.check_time(at, retriever.published(), "at")
    at = at or datetime.now(UTC)
    try:
        row = retriever.rooms.end(item_id, at)
    except KeyError:
        raise UnknownQuery(f"room {item_id} is not in the published collection: check the id "
                           "(rooms start with `rgcd rooms start`)") from None
    if row is None:
        return False
    started = read_started(retriever.ws)
    inputs = {}
    if started is not None:
        mine = started.filter(started["item_id"] == item_id)
        inputs = mine.row(0, named=True) if mine.height else {}
    now = datetime.now(UTC)
    entry = {"item_id": item_id, "live_id": int(item_id[5:]), "author_id": row["author_id"],
             "start_timestamp": row["start"], "end_timestamp": row["end"],
             **{f: inputs.get(f) for f in INPUTS}, "mm_embedding": inputs.get("mm_embedding"),
             "created_timestamp": now}
    _push_schedule(retriever, [entry])
    if inputs:  # a room of the published version keeps its interval in the marts; only logged rooms here
        _record(retriever.ws, [entry])
    return True
