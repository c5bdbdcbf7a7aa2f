"""Candidate retrieval over the rooms on air: user -> live (U2I) and short video -> live (I2I).

- U2I: the user's vector (user_embeddings, read through Feast's online store with its model version)
  against the rooms' `retrieval` vectors (inner product). A user without a vector gets rooms close
  to the mean of their recent short videos' transferable vectors (user_recent_videos), else the most
  popular rooms on air; the answer's `source` says which.
- I2I: a short video's `transferable` vector (item_embeddings, online) against the rooms'
  `transferable` vectors (cosine).
- The searched set is the rooms on air at the request time: start <= t < coalesce(end, +inf).
- The query vector's model version must equal the searched collection's, or VersionMismatch: the
  alias's collection, or a validated collection of the query's version (during a publish, RoomVectors.
  for_version), so that a publish under load answers every request from one version.
- Every candidate says why, from the teacher's knowledge where it exists: the room's as the
  collection holds it (written by publish), the query videos' from the online store.

A request costs one online read (the user: vector, version, recent videos and their knowledge; or
the short video: vector, version, knowledge) and one Milvus search (the candidates with their
knowledge); only the fallbacks read more.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from rgcd.config import Settings, Workspace
from rgcd.embeddings.milvus_store import KNOWLEDGE, Hit, Published, RoomVectors, Search, to_ms
from rgcd.embeddings.online_features import RECENT_KNOWLEDGE
from rgcd.errors import RgcdError

# The feature services retrieval reads online (feature_repo/services.py): a user's vector, recent
# short videos with the teacher's knowledge and short-video activity; an item's vector and knowledge.
USER_SERVICE = "retrieval_user"
ITEM_SERVICE = "retrieval_item"
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

    def as_json(self) -> dict:
        """{item_id, author_id, score, reason} (what dataclasses.asdict gives, without its recursive
        copy: at k = 50 that was ~8% of a serving worker's CPU)."""
        return {"item_id": self.item_id, "author_id": self.author_id, "score": self.score,
                "reason": self.reason}


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
                "candidates": [c.as_json() for c in self.candidates]}


@dataclass(frozen=True)
class Pending:
    """A request up to its one Milvus search: the search, and what makes the answer of its hits."""

    search: Search
    finish: Callable[[list[Hit]], Answer]


INT64_MAX = 2**63 - 1
_EPOCH_MS = re.compile(r"-?[0-9]{1,19}")
_DIGITS = re.compile(r"[0-9]{1,19}")
ECHO_CHARS = 100  # an input quoted back in an error message is cut to this many characters


def echo(value: object) -> str:
    """`value` as an error message quotes it: repr, cut to ECHO_CHARS characters."""
    text = value if isinstance(value, str) else repr(value)
    cut = text[:ECHO_CHARS] + (f"... ({len(text):,} characters)" if len(text) > ECHO_CHARS else "")
    return repr(cut) if isinstance(value, str) else cut


def parse_at(value: str | None) -> datetime:
    """A request time from ISO 8601 (naive = UTC) or epoch milliseconds; None = now."""
    if value is None or value == "":
        return datetime.now(UTC)
    try:
        if _EPOCH_MS.fullmatch(value):
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except (ValueError, OverflowError, OSError):  # out of datetime's range, in either form
        raise BadQuery(f"at={echo(value)} is not a time: give ISO 8601 (2025-05-18T20:00:00Z) or epoch "
                       "milliseconds within years 1..9999") from None


def parse_id(value: object, what: str, minimum: int = 0) -> int:
    """An id as an int64 (an int, or a string of ASCII digits); BadQuery otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadQuery(f"{what}={echo(value)} is not an integer id")
    if isinstance(value, str):
        digits = value[1:] if value.startswith("-") and minimum < 0 else value
        if not _DIGITS.fullmatch(digits):
            raise BadQuery(f"{what}={echo(value)} is not an integer id (ASCII digits, at most 19)")
        value = int(value)
    if not minimum <= value <= INT64_MAX:
        raise BadQuery(f"{what}={echo(value)} is out of range: ids are {minimum}..{INT64_MAX} (int64)")
    return value


def parse_item(value: str) -> str:
    """A short video's item id ('photo:<id>'); BadQuery otherwise."""
    kind, _, ident = value.partition(":")
    if kind != "photo" or not _DIGITS.fullmatch(ident):
        raise BadQuery(f"item {echo(value)}: short video -> live retrieval takes a short video, "
                       "'photo:<photo_id>' (e.g. photo:123)")
    parse_id(ident, "photo_id")
    return value


def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def _mean(vectors: list[list[float]]) -> list[float]:
    units = [_unit(v) for v in vectors]
    return [sum(col) / len(units) for col in zip(*units, strict=True)]


class Evidence:
    """The query videos' knowledge, indexed once per request: per shared field, the first (strongest)
    video that holds each value, as reasons compare values (trimmed, case-folded; empty never matches).
    A reason then costs a few lookups per candidate, not a walk over every recent video."""

    def __init__(self, videos: list[tuple[str, dict]]) -> None:
        self.videos = videos
        self.first: dict[str, dict[str, str]] = {field: {} for field, _ in SHARED}
        for photo, knowledge in videos:
            for field, index in self.first.items():
                value = knowledge.get(field)
                if value:
                    index.setdefault(value.strip().lower(), photo)
        self.knows_subjects = any(k.get("key_subject") for _, k in videos)

    def sharing(self, field: str, value: str | None) -> str | None:
        """The strongest query video whose `field` is `value`, or None."""
        return self.first[field].get(value.strip().lower()) if value else None


def explain(room: dict | None, query: Evidence, who: str, space: str | None) -> str:
    """A candidate's reason from the teacher's knowledge of the room and of the query's videos.

    `query` holds [(photo item id, knowledge)], strongest evidence first; `who` names them in the
    sentence ("your recent short video", "the short video"); `space` is the vector space searched
    (None: not a vector search).
    """
    close = f", close in the {space} space" if space else ""
    if not room or not room.get("key_subject"):
        return f"no teacher knowledge of this room yet{close}"
    teacher = f" (teacher: {room['teacher_id']})" if room.get("teacher_id") else ""
    for field, label in SHARED:
        photo = query.sharing(field, room.get(field))
        if photo is not None:
            return f"shares the {label} '{room[field]}' with {who} {photo}{teacher}"
    about = f"a room about '{room['key_subject']}' ({room.get('vertical_domain') or 'no vertical'}){close}"
    if query.knows_subjects:
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
        # Milvus first: a Milvus Lite file held by another process is refused in a moment, before
        # Feast's import (seconds)
        self.rooms = rooms or RoomVectors.connect(ws, settings)
        try:
            self.store = feature_store(ws, settings)
        except BaseException:
            self.rooms.close()
            raise
        self._services: dict[str, object] = {}
        self._dims: dict[str, dict[str, int | None]] = {}

    def vector_dims(self, published: Published) -> dict[str, int | None]:
        """Lengths of the published model's vectors: transferable and retrieval as its collection
        holds them, residual as stage 2 wrote it for that version (None where not known)."""
        if published.collection not in self._dims:
            import polars as pl

            dims: dict[str, int | None] = dict(self.rooms.dims(published.collection))
            path = self.ws.feature_data / "item_embeddings.parquet"
            lengths = (pl.scan_parquet(path).filter(pl.col("model_version") == published.model_version)
                       .select(pl.col("residual").list.len()).drop_nulls().head(1).collect()
                       if path.exists() else None)
            dims["residual"] = lengths.item() if lengths is not None and lengths.height else None
            self._dims[published.collection] = dims
        return self._dims[published.collection]

    def close(self) -> None:
        """Release Milvus (the Lite file is then free for another process)."""
        self.rooms.close()

    def published(self) -> Published:
        """The collection readers search now (NotPublished before any publish)."""
        return self.rooms.current()

    def check_time(self, at: datetime, published: Published, what: str = "at") -> datetime:
        """`at` if the published rooms cover it: not before the oldest room kept, not past now +
        serving.clock_skew_s. Nothing was on air outside that window, and a far-past request would
        walk every ended room: refused (BadQuery) instead of answered slowly and empty."""
        skew = self.settings.serving.clock_skew_s
        latest = datetime.now(UTC) + timedelta(seconds=skew)
        if at > latest:
            raise BadQuery(f"{what}={at.isoformat()} is in the future (more than {skew} s past now, "
                           "serving.clock_skew_s): give a time up to now")
        if published.started_from and to_ms(at) < published.started_from:
            oldest = datetime.fromtimestamp(published.started_from / 1000, tz=UTC)
            raise BadQuery(f"{what}={at.isoformat()} is before the oldest room kept ({oldest.isoformat()}, "
                           f"in {published.model_version}): nothing was on air then; give a later time")
        return at

    def _k(self, k: int | None) -> int:
        r = self.settings.retrieval
        k = r.default_k if k is None else k
        if not 1 <= k <= r.max_k:
            raise BadQuery(f"k={k} is out of range: ask for 1..{r.max_k} candidates "
                           "(retrieval.max_k sets the cap)")
        return k

    def online(self, service: str | list[str], key: str, ids: list) -> list[dict]:
        """One online read of a feature service (or of 'view:feature' references, for a look by
        hand): per id, a dict '<view>__<feature>' -> value."""
        if isinstance(service, list):
            features = service
        else:
            if service not in self._services:
                self._services[service] = self.store.get_feature_service(service)
            features = self._services[service]
        got = self.store.get_online_features(features=features,
                                             entity_rows=[{key: i} for i in ids],
                                             full_feature_names=True).to_dict()
        columns = [c for c in got if "__" in c]
        return [{c: got[c][n] for c in columns} for n in range(len(ids))]

    def _check_version(self, what: str, version: str | None, published: Published) -> None:
        if version != published.model_version:
            raise VersionMismatch(
                f"{what} comes from model version {version!r} but the published rooms are "
                f"{published.model_version!r}: publish the version that wrote it (`rgcd publish`), or "
                "roll back (`rgcd publish --rollback`) so that both match")

    def _collection_for(self, what: str, version: str | None, published: Published) -> Published:
        """The validated collection of the query vector's version (the alias's when they match)."""
        found = self.rooms.for_version(version)
        if found is None:
            self._check_version(what, version, published)
        return found or published

    def _answer(self, published: Published, query: str, at: datetime, source: str, hits: list[Hit],
                evidence: list[tuple[str, dict]], who: str, space: str | None) -> Answer:
        candidates = []
        indexed = Evidence(evidence)
        for h in hits:
            reason = explain(h.knowledge, indexed, who, space)
            if space is None:
                reason = (f"popular on air ({h.popularity:.0f} live sessions of its author in the "
                          f"{self.settings.retrieval.popularity_days} days before the cut); " + reason)
            candidates.append(Candidate(h.item_id, h.author_id, round(h.score, 6), reason))
        return Answer(published.model_version, query, at, source, candidates)

    def for_user(self, user_id: int, at: datetime | None = None, k: int | None = None) -> Answer:
        """User -> live: the k rooms on air at `at` (default now) for this user."""
        return self.complete(self.plan_user(user_id, at, k))

    def for_item(self, item_id: str, at: datetime | None = None, k: int | None = None) -> Answer:
        """Short video -> live: the k rooms on air at `at` closest to this short video."""
        return self.complete(self.plan_item(item_id, at, k))

    def complete(self, plan: Answer | Pending) -> Answer:
        """The answer of a plan, its search run alone (the service batches them: SearchBatcher)."""
        if isinstance(plan, Answer):
            return plan
        return plan.finish(self.rooms.search_many([plan.search])[0])

    def plan_user(self, user_id: int, at: datetime | None = None, k: int | None = None) -> Answer | Pending:
        """for_user up to its search: the answer, or the search and what makes the answer of its hits."""
        user_id, at, k = parse_id(user_id, "user_id"), at or datetime.now(UTC), self._k(k)
        published = self.published()
        self.check_time(at, published)
        (row,) = self.online(USER_SERVICE, "user_id", [user_id])
        vector, version = row["user_embeddings__user_vector"], row["user_embeddings__model_version"]
        recent = list(row["user_recent_videos__recent_photo_ids"] or [])
        if vector is None and not recent and row["user_features_daily__sv_plays_30d"] is None:
            raise UnknownQuery(f"user {user_id} is not in the online store (no vector, no history, no "
                               "features): check the id, or run `rgcd features materialize` after new "
                               "users")
        query, who = f"user:{user_id}", "your recent short video"
        evidence = _recent_evidence(row, recent)
        if vector is not None:
            published = self._collection_for(f"the vector of user {user_id}", version, published)
            return Pending(Search("retrieval", list(vector), to_ms(at), k, published),
                           partial(self._answer, published, query, at, "user_vector", evidence=evidence,
                                   who=who, space="user-room"))
        photos = self.online(ITEM_SERVICE, "item_id", recent) if recent else []
        with_vectors = [r for r in photos if r["item_embeddings__transferable"] is not None]
        if with_vectors:
            versions = sorted({r["item_embeddings__model_version"] for r in with_vectors})
            matching = [r for r in with_vectors
                        if r["item_embeddings__model_version"] == published.model_version]
            if not matching:
                self._check_version(f"the recent short videos of user {user_id}", versions[0], published)
            centre = _mean([list(r["item_embeddings__transferable"]) for r in matching])
            return Pending(Search("transferable", centre, to_ms(at), k, published),
                           partial(self._answer, published, query, at, "recent_short_videos",
                                   evidence=evidence, who=who, space="transferable"))
        hits = self.rooms.popular(at, k)
        return self._answer(published, query, at, "popular_on_air", hits, evidence, who, None)

    def plan_item(self, item_id: str, at: datetime | None = None, k: int | None = None) -> Pending:
        """for_item up to its search."""
        item_id, at, k = parse_item(item_id), at or datetime.now(UTC), self._k(k)
        published = self.published()
        self.check_time(at, published)
        (row,) = self.online(ITEM_SERVICE, "item_id", [item_id])
        vector = row["item_embeddings__transferable"]
        if vector is None:
            raise UnknownQuery(f"short video {item_id} has no vector in the online store: check the id, or "
                               "publish the model version that encoded it (`rgcd publish`)")
        published = self._collection_for(f"the vector of {item_id}", row["item_embeddings__model_version"],
                                         published)
        evidence = [(item_id, {f: row[f"item_reasoning__{f}"] for f in KNOWLEDGE})]
        return Pending(Search("transferable", list(vector), to_ms(at), k, published),
                       partial(self._answer, published, item_id, at, "item_vector", evidence=evidence,
                               who="the short video", space="transferable"))
