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
and the model `rgcd transfer` published (rgcd.training.stage2.load_published: transferable,
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
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rgcd.embeddings.milvus_store import Room
from rgcd.embeddings.retrieval import BadQuery, Retriever, UnknownQuery, VersionMismatch, parse_at

VECTOR_FIELDS = ("transferable", "residual", "retrieval")
PUSH_SOURCE = "item_embeddings_push"
SCHEDULE_PUSH = "live_schedule_push"
STARTED = "rooms_started"
# What the student reads of a room (kept in the log of started rooms, for the next publish).
INPUTS = ("live_name", "category_l1", "category_l2", "category_l3", "category_l4")


class RoomEncoder:
    """Student (chorus states) + the published stage-2 model: a room's inputs -> its vectors."""

    def __init__(self, ws, settings) -> None:
        model_dir = ws.models / "student" / "model"
        if not model_dir.exists():  # before importing torch: a service without a student starts faster
            raise BadQuery(f"{model_dir} is missing: run `rgcd distill` and `rgcd transfer` before rooms "
                           "are encoded, or give precomputed vectors")
        import torch

        from rgcd.training.published_model import load_published
        from rgcd.training.student import ChorusStudent, encode_items

        try:
            self.published = load_published(ws)
        except FileNotFoundError as err:
            raise BadQuery(f"{err}; or give the rooms precomputed vectors") from None
        self.student = ChorusStudent.from_pretrained(model_dir).eval()
        self.batch = settings.student.encode_batch_size
        self._encode_items, self._torch = encode_items, torch
        self.model_version = self.published.model_version

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
    """Rooms from a JSON list / {"rooms": [...]} / JSON lines / parquet file."""
    if not path.exists():
        raise BadQuery(f"{path} does not exist: give a JSON, JSON-lines or parquet file of rooms")
    if path.suffix == ".parquet":
        import polars as pl

        return pl.read_parquet(path).to_dicts()
    text = path.read_text()
    try:
        data = json.loads(text)
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
    return data


def _item_id(room: dict) -> str:
    if room.get("item_id"):
        item_id = str(room["item_id"])
        if not item_id.startswith("live:") or not item_id[5:].isdigit():
            raise BadQuery(f"item_id {item_id!r}: a room is 'live:<live_id>'")
        return item_id
    if room.get("live_id") is None or not str(room["live_id"]).isdigit():
        raise BadQuery(f"a room needs live_id (an integer) or item_id 'live:<id>'; got {room!r:.120}")
    return f"live:{int(room['live_id'])}"


def _precomputed(room: dict) -> bool:
    return any(room.get(f) is not None for f in (*VECTOR_FIELDS, "model_version"))


def _vectors(room: dict, item_id: str, version: str) -> dict[str, list[float]]:
    missing = [f for f in (*VECTOR_FIELDS, "model_version") if room.get(f) is None]
    if missing:
        raise BadQuery(f"room {item_id} has precomputed vectors but lacks {', '.join(missing)}: give all "
                       "of transferable, residual, retrieval and model_version, or none (then it is encoded)")
    if room["model_version"] != version:
        raise VersionMismatch(f"room {item_id} comes with vectors of {room['model_version']!r} but the "
                              f"published rooms are {version!r}: encode it with the published version")
    return {f: [float(x) for x in room[f]] for f in VECTOR_FIELDS}


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
    from rgcd.embeddings.retrieval import ITEM_KNOWLEDGE

    rows = retriever.online(ITEM_KNOWLEDGE, "item_id", item_ids)
    return [{f: r[f"item_reasoning__{f}"] or "" for f in KNOWLEDGE} for r in rows]


def start_rooms(retriever: Retriever, rooms: list[dict], encoder: RoomEncoder | None = None) -> RoomsReport:
    """Put rooms on air: vectors (given, or encoded), Milvus upsert + Feast push; returns when they
    are retrievable. `encoder` is loaded here when a room needs encoding and none is given."""
    import pandas as pd
    from feast.data_source import PushMode

    t0 = time.perf_counter()
    published = retriever.published()
    now = datetime.now(UTC)
    ids = [_item_id(room) for room in rooms]
    for item_id, room in zip(ids, rooms, strict=True):
        if room.get("author_id") is None or not str(room["author_id"]).lstrip("-").isdigit():
            raise BadQuery(f"room {item_id} needs author_id (an integer)")
    vectors = [_vectors(r, i, published.model_version) if _precomputed(r) else None
               for i, r in zip(ids, rooms, strict=True)]
    to_encode = [n for n, v in enumerate(vectors) if v is None]
    if to_encode:
        encoder = encoder or RoomEncoder(retriever.ws, retriever.settings)
        if encoder.model_version != published.model_version:
            raise VersionMismatch(f"the published stage-2 model is {encoder.model_version!r} but the "
                                  f"published rooms are {published.model_version!r}: run `rgcd publish`")
        encoded = encoder.encode([ids[n] for n in to_encode], [rooms[n] for n in to_encode])
        for n, v in zip(to_encode, encoded, strict=True):
            vectors[n] = v
    how = ("precomputed vectors" if not to_encode else "encoded vectors (student + stage 2)"
           if len(to_encode) == len(rooms) else "given and encoded vectors")
    made: list[Room] = []
    knowledge = _room_knowledge(retriever, ids)
    for item_id, room, v, known in zip(ids, rooms, vectors, knowledge, strict=True):
        start = parse_at(str(room["start_timestamp"])) if room.get("start_timestamp") is not None else now
        author = int(room["author_id"])
        made.append(Room(item_id, author, start, None, retriever.rooms.author_popularity(author),
                         v["transferable"], v["retrieval"], known))
    try:
        retriever.rooms.upsert_on_air(made)
    except ValueError as err:
        raise BadQuery(f"room(s) {err} already went off air; a new broadcast needs a new live_id") from None
    frame = pd.DataFrame({
        "item_id": [r.item_id for r in made],
        "transferable": [v["transferable"] for v in vectors],
        "residual": [v["residual"] for v in vectors],
        "retrieval": [v["retrieval"] for v in vectors],
        "model_version": [published.model_version] * len(made),
        "event_timestamp": [r.start for r in made],
        "created_timestamp": [now] * len(made),
    })
    retriever.store.push(PUSH_SOURCE, frame, to=PushMode.ONLINE)
    log = [{"item_id": r.item_id, "live_id": int(r.item_id[5:]), "author_id": r.author_id,
            "start_timestamp": r.start, "end_timestamp": None, **{f: room.get(f) for f in INPUTS},
            "mm_embedding": room.get("mm_embedding"), "created_timestamp": now}
           for r, room in zip(made, rooms, strict=True)]
    _push_schedule(retriever, log)
    _record(retriever.ws, log)
    return RoomsReport(tuple(r.item_id for r in made), published.model_version, how, time.perf_counter() - t0)


def end_room(retriever: Retriever, item_id: str, at: datetime | None = None) -> bool:
    """Take a room off air at `at` (default now); False if it had ended already."""
    if not item_id.startswith("live:") or not item_id[5:].isdigit():
        raise BadQuery(f"{item_id!r}: a room is 'live:<live_id>'")
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
