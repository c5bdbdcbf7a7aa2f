"""Candidate retrieval over the rooms on air: user -> live (U2I) and short video -> live (I2I).

- U2I: the user's vector (user_embeddings, read through Feast's online store with its model version)
  against the rooms' `retrieval` vectors (inner product). A user without a vector gets rooms close
  to the mean of their recent short videos' transferable vectors (user_recent_videos), else the most
  popular rooms on air; the answer's `source` says which.
- I2I: a short video's `transferable` vector (item_embeddings, online) against the rooms'
  `transferable` vectors (cosine).
- The searched set is the rooms on air at the request time: start <= t < coalesce(end, +inf).
- The query vector's model version must equal the published collection's, or VersionMismatch.
- Every candidate says why, from the teacher's knowledge where it exists: the room's as the
  collection holds it (written by publish), the query videos' from the online store.

A request costs one online read (the user: vector, version, recent videos and their knowledge; or
the short video: vector, version, knowledge) and one Milvus search (the candidates with their
knowledge); only the fallbacks read more.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from rgcd.config import Settings, Workspace
from rgcd.embeddings.milvus_store import KNOWLEDGE, Hit, Published, RoomVectors
from rgcd.embeddings.online_features import RECENT_KNOWLEDGE
from rgcd.errors import RgcdError

USER_FEATURES = ["user_embeddings:user_vector", "user_embeddings:model_version",
                 "user_recent_videos:recent_photo_ids",
                 *[f"user_recent_videos:{c}" for c in RECENT_KNOWLEDGE.values()]]
# Read only for a user with neither vector nor history: known (popular rooms) or unknown (404).
USER_KNOWN = ["user_features_daily:sv_plays_30d"]
ITEM_VECTOR = ["item_embeddings:transferable", "item_embeddings:model_version"]
ITEM_KNOWLEDGE = [f"item_reasoning:{f}" for f in KNOWLEDGE]
# Shared knowledge, strongest first: what a reason names when a room and a query video share it.
SHARED = (("key_subject", "key subject"), ("content_theme", "theme"), ("vertical_domain", "vertical"))


class RetrievalError(RgcdError):
    """A request retrieval cannot answer; `http_status` is what the service answers with."""

    exit_code = 2
    http_status = 400


class UnknownQuery(RetrievalError):
    """No such user or short video in the online store."""

    http_status = 404


class BadQuery(RetrievalError):
    """A parameter is out of range or malformed."""

    http_status = 422


class VersionMismatch(RetrievalError):
    """The query vector and the published collection come from different model versions."""

    http_status = 409


@dataclass(frozen=True)
class Candidate:
    """One retrieved room."""

    item_id: str
    author_id: int
    score: float
    reason: str


@dataclass(frozen=True)
class Answer:
    """What retrieval returns: the rooms and how they were found."""

    model_version: str
    query: str
    at: datetime
    source: str
    candidates: list[Candidate]

    def as_json(self) -> dict:
        """{"model_version", "query", "at", "source", "candidates": [{item_id, author_id, score, reason}]}."""
        return {"model_version": self.model_version, "query": self.query,
                "at": self.at.isoformat().replace("+00:00", "Z"), "source": self.source,
                "candidates": [asdict(c) for c in self.candidates]}


def parse_at(value: str | None) -> datetime:
    """A request time from ISO 8601 (naive = UTC) or epoch milliseconds; None = now."""
    if value is None or value == "":
        return datetime.now(UTC)
    try:
        if value.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise BadQuery(f"at={value!r} is not a time: give ISO 8601 (2025-05-18T20:00:00Z) or epoch "
                       "milliseconds") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def parse_item(value: str) -> str:
    """A short video's item id ('photo:<id>'); BadQuery otherwise."""
    kind, _, ident = value.partition(":")
    if kind != "photo" or not ident.isdigit():
        raise BadQuery(f"item {value!r}: short video -> live retrieval takes a short video, "
                       "'photo:<photo_id>' (e.g. photo:123)")
    return value


def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def _mean(vectors: list[list[float]]) -> list[float]:
    units = [_unit(v) for v in vectors]
    return [sum(col) / len(units) for col in zip(*units, strict=True)]


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and a.strip().lower() == b.strip().lower()


def explain(room: dict | None, query: list[tuple[str, dict]], who: str, space: str | None) -> str:
    """A candidate's reason from the teacher's knowledge of the room and of the query's videos.

    `query` is [(photo item id, knowledge)], strongest evidence first; `who` names them in the
    sentence ("your recent short video", "the short video"); `space` is the vector space searched
    (None: not a vector search).
    """
    close = f", close in the {space} space" if space else ""
    if not room or not room.get("key_subject"):
        return f"no teacher knowledge of this room yet{close}"
    teacher = f" (teacher: {room['teacher_id']})" if room.get("teacher_id") else ""
    for field, label in SHARED:
        for photo, knowledge in query:
            if _same(room.get(field), knowledge.get(field)):
                return f"shares the {label} '{room[field]}' with {who} {photo}{teacher}"
    about = f"a room about '{room['key_subject']}' ({room.get('vertical_domain') or 'no vertical'}){close}"
    if any(k.get("key_subject") for _, k in query):
        about += f"; no topic shared with {who}s the teacher knows"
    return about + teacher


def _recent_evidence(row: dict, recent: list[str]) -> list[tuple[str, dict]]:
    """[(photo, knowledge)] of a user's recent videos, newest first, from their user_recent_videos row."""
    columns = {f: list(row[f"user_recent_videos__{c}"] or []) for f, c in RECENT_KNOWLEDGE.items()}
    return [(p, {f: (values[n] if n < len(values) else "") for f, values in columns.items()})
            for n, p in enumerate(recent)]


class Retriever:
    """Retrieval over one workspace: the Feast online store + the Milvus rooms collection."""

    def __init__(self, ws: Workspace, settings: Settings, rooms: RoomVectors | None = None) -> None:
        from rgcd.featurestore.store import feature_store

        self.ws, self.settings = ws, settings
        self.store = feature_store(ws, settings)
        self.rooms = rooms or RoomVectors.connect(ws, settings)

    def close(self) -> None:
        """Release Milvus (the Lite file is then free for another process)."""
        self.rooms.close()

    def published(self) -> Published:
        """The collection readers search now (NotPublished before any publish)."""
        return self.rooms.current()

    def _k(self, k: int | None) -> int:
        r = self.settings.retrieval
        k = r.default_k if k is None else k
        if not 1 <= k <= r.max_k:
            raise BadQuery(f"k={k} is out of range: ask for 1..{r.max_k} candidates "
                           "(retrieval.max_k sets the cap)")
        return k

    def online(self, features: list[str], key: str, ids: list) -> list[dict]:
        """One online read through Feast: per id, a dict '<view>__<feature>' -> value."""
        got = self.store.get_online_features(features=features, entity_rows=[{key: i} for i in ids],
                                             full_feature_names=True).to_dict()
        out = []
        for n in range(len(ids)):
            out.append({ref.split(":")[0] + "__" + ref.split(":")[1]: got[ref.replace(":", "__")][n]
                        for ref in features})
        return out

    def _check_version(self, what: str, version: str | None, published: Published) -> None:
        if version != published.model_version:
            raise VersionMismatch(
                f"{what} comes from model version {version!r} but the published rooms are "
                f"{published.model_version!r}: publish the version that wrote it (`rgcd publish`), or "
                "roll back (`rgcd publish --rollback`) so that both match")

    def _answer(self, published: Published, query: str, at: datetime, source: str, hits: list[Hit],
                evidence: list[tuple[str, dict]], who: str, space: str | None) -> Answer:
        candidates = []
        for h in hits:
            reason = explain(h.knowledge, evidence, who, space)
            if space is None:
                reason = (f"popular on air ({h.popularity:.0f} live sessions of its author in the "
                          f"{self.settings.retrieval.popularity_days} days before the cut); " + reason)
            candidates.append(Candidate(h.item_id, h.author_id, round(h.score, 6), reason))
        return Answer(published.model_version, query, at, source, candidates)

    def for_user(self, user_id: int, at: datetime | None = None, k: int | None = None) -> Answer:
        """User -> live: the k rooms on air at `at` (default now) for this user."""
        at, k = at or datetime.now(UTC), self._k(k)
        published = self.published()
        (row,) = self.online(USER_FEATURES, "user_id", [int(user_id)])
        vector, version = row["user_embeddings__user_vector"], row["user_embeddings__model_version"]
        recent = list(row["user_recent_videos__recent_photo_ids"] or [])
        if vector is None and not recent:
            (known,) = self.online(USER_KNOWN, "user_id", [int(user_id)])
            if known["user_features_daily__sv_plays_30d"] is None:
                raise UnknownQuery(f"user {user_id} is not in the online store (no vector, no history, no "
                                   "features): check the id, or run `rgcd features materialize` after new "
                                   "users")
        query = f"user:{user_id}"
        evidence = _recent_evidence(row, recent)
        if vector is not None:
            self._check_version(f"the vector of user {user_id}", version, published)
            hits = self.rooms.search("retrieval", list(vector), at, k)
            return self._answer(published, query, at, "user_vector", hits, evidence,
                                "your recent short video", "user-room")
        photos = self.online(ITEM_VECTOR, "item_id", recent) if recent else []
        with_vectors = [r for r in photos if r["item_embeddings__transferable"] is not None]
        if with_vectors:
            versions = sorted({r["item_embeddings__model_version"] for r in with_vectors})
            matching = [r for r in with_vectors
                        if r["item_embeddings__model_version"] == published.model_version]
            if not matching:
                self._check_version(f"the recent short videos of user {user_id}", versions[0], published)
            centre = _mean([list(r["item_embeddings__transferable"]) for r in matching])
            hits = self.rooms.search("transferable", centre, at, k)
            return self._answer(published, query, at, "recent_short_videos", hits, evidence,
                                "your recent short video", "transferable")
        hits = self.rooms.popular(at, k)
        return self._answer(published, query, at, "popular_on_air", hits, evidence,
                            "your recent short video", None)

    def for_item(self, item_id: str, at: datetime | None = None, k: int | None = None) -> Answer:
        """Short video -> live: the k rooms on air at `at` closest to this short video."""
        item_id, at, k = parse_item(item_id), at or datetime.now(UTC), self._k(k)
        published = self.published()
        (row,) = self.online(ITEM_VECTOR + ITEM_KNOWLEDGE, "item_id", [item_id])
        vector = row["item_embeddings__transferable"]
        if vector is None:
            raise UnknownQuery(f"short video {item_id} has no vector in the online store: check the id, or "
                               "publish the model version that encoded it (`rgcd publish`)")
        self._check_version(f"the vector of {item_id}", row["item_embeddings__model_version"], published)
        hits = self.rooms.search("transferable", list(vector), at, k)
        evidence = [(item_id, {f: row[f"item_reasoning__{f}"] for f in KNOWLEDGE})]
        return self._answer(published, item_id, at, "item_vector", hits, evidence, "the short video",
                            "transferable")
