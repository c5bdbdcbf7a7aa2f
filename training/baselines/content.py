"""Content-only baselines: a user is the mean of the content vectors of what they engaged with.

Scores are cosine similarities between that profile and each candidate's content vector. No
collaborative signal is learned; nothing is trained, so the seed does not matter.

- `content_mm`: the dataset's precomputed multimodal vectors (`item_content.mm_embedding`).
  Photos (128-d) and live rooms (64-d) come from different encoders and do not share a space,
  so the profile uses live history only: a user without live history is unknown to it.
- `content_text`: all-MiniLM-L6-v2 sentence vectors (see training/text_encoder.py) of titles
  (photo: cover title + video text; live room: its name). One space for both domains, so a
  cold-start user's short-video history does reach the live rooms. Only the `max_items` most
  played photos are encoded (CPU budget); interactions with other photos are left out.

A live author (the klm3-cdr target) is the mean of its most recent rooms' vectors (rooms started
before the protocol's cut, when it has one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from rgcd.training.recommender import UNKNOWN_SCORE, ItemCatalog, TrainData, sum_rows_by


def _unit(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def _matrix(vectors: pl.Series) -> np.ndarray:
    """A list column of equal-length vectors as one float32 matrix, without a Python float per
    value (as lists, the demo's 169,730 room vectors took 0.35 GiB for a moment)."""
    if vectors.is_empty():
        return np.zeros((0, 0), dtype=np.float32)
    return vectors.explode().to_numpy().astype(np.float32).reshape(len(vectors), -1)


def _mean_by(groups: list, vectors: np.ndarray) -> dict:
    """Mean vector per group over the rows of `vectors` (row i belongs to groups[i])."""
    out: dict = {}
    for g, v in zip(groups, vectors, strict=True):
        out.setdefault(g, []).append(v)
    return {g: np.mean(vs, axis=0) for g, vs in out.items()}


def _mean_profiles(hist: pl.DataFrame, vectors: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Per user, the mean of the unit vectors of the items in its (user_id, item_id) history.

    Summed column by column into a users x d matrix (`sum_rows_by`): one row per history entry at
    once would be 800k x 384 floats (1.2 GB, twice with the normalised copy) for content_text at the
    demo size.
    """
    items = list(vectors)
    unit = _unit(np.stack([vectors[i] for i in items]).astype(np.float32))
    item_row = pl.DataFrame({"item_id": items, "row": np.arange(len(items), dtype=np.int64)})
    users = hist["user_id"].unique().sort()
    rows = hist.join(item_row, on="item_id")
    user_idx, item_idx = users.search_sorted(rows["user_id"]).to_numpy(), rows["row"].to_numpy()
    total = sum_rows_by(user_idx, unit, len(users), take=item_idx)
    mean = (total / np.bincount(user_idx, minlength=len(users))[:, None]).astype(np.float32)
    return dict(zip(users.to_list(), mean, strict=True))


class _ContentProfile:
    """User profile = unit mean of unit item vectors; subclasses say which item has which vector."""

    name = "content"
    seed_independent = True  # fit reads no seed: evaluation fits it once for every seed

    def __init__(self) -> None:
        self.catalog: ItemCatalog | None = None
        self.vectors: dict[str, np.ndarray] = {}
        self.profiles: dict[int, np.ndarray] = {}
        self._candidates: dict[str, np.ndarray | None] = {}

    def _item_vectors(self, data: TrainData) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _history(self, data: TrainData) -> pl.DataFrame:
        return data.interactions

    def _candidate_vectors(self, item_ids: Sequence[str]) -> list[np.ndarray | None]:
        return [self.vectors.get(i) for i in item_ids]

    def fit(self, data: TrainData, seed: int) -> None:
        """Build item vectors and each training user's profile (seed unused: nothing random)."""
        self.catalog = data.catalog
        self._candidates = {}
        self.vectors = self._item_vectors(data)
        hist = self._history(data).select("user_id", "item_id").unique()
        hist = hist.filter(pl.col("item_id").is_in(list(self.vectors)))
        self.profiles = {}
        if hist.is_empty():
            return
        self.profiles = _mean_profiles(hist, self.vectors)

    def score(self, user_ids: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """Cosine of user profile and item vector; unknown users score 0, unknown items UNKNOWN_SCORE."""
        todo = [i for i in dict.fromkeys(item_ids) if i not in self._candidates]
        if todo:
            self._candidates.update(zip(todo, self._candidate_vectors(todo), strict=True))
        found = [self._candidates[i] for i in item_ids]
        dim = next((v.shape[0] for v in found if v is not None), 1)
        known = np.array([v is not None for v in found], dtype=bool)
        items = _unit(np.stack([v if v is not None else np.zeros(dim, np.float32) for v in found])
                      .astype(np.float32))
        users = np.zeros((len(user_ids), items.shape[1]), dtype=np.float32)
        for r, u in enumerate(user_ids):
            p = self.profiles.get(int(u))
            if p is not None and p.shape[0] == items.shape[1]:
                users[r] = p
        scores = _unit(users) @ items.T
        scores[:, ~known] = UNKNOWN_SCORE
        return scores


def _recent_rooms(catalog: ItemCatalog, per_author: int) -> pl.DataFrame:
    rooms = catalog.author_rooms()
    order = "start_timestamp" if "start_timestamp" in rooms.columns else "item_id"
    return (rooms.sort(order, descending=True)
            .group_by("author_id", maintain_order=True).head(per_author))


@dataclass
class ContentMMConfig:
    """Rooms averaged into an author's vector."""

    rooms_per_author: int = 5


class ContentMM(_ContentProfile):
    """Content-only on the precomputed multimodal vectors, live domain only (see module doc)."""

    name = "content_mm"

    def __init__(self, config: ContentMMConfig | None = None) -> None:
        super().__init__()
        self.config = config or ContentMMConfig()

    def _history(self, data: TrainData) -> pl.DataFrame:
        return data.domain("live")

    def _item_vectors(self, data: TrainData) -> dict[str, np.ndarray]:
        live = data.catalog.content.filter(
            (pl.col("domain") == "live") & pl.col("mm_embedding").is_not_null())
        out = dict(zip(live["item_id"].to_list(), _matrix(live["mm_embedding"]), strict=True))
        rooms = _recent_rooms(data.catalog, self.config.rooms_per_author).filter(
            pl.col("mm_embedding").is_not_null())
        if not rooms.is_empty():
            mat = _unit(_matrix(rooms["mm_embedding"]))
            authors = [f"author:{a}" for a in rooms["author_id"].to_list()]
            out.update(_mean_by(authors, mat))
        return out


@dataclass
class ContentTextConfig:
    """CPU budget of the text encoder."""

    max_items: int = 3000
    rooms_per_author: int = 3
    dtype: str = "float32"  # MiniLM's ("bfloat16" where the CPU has it natively: training/precision.py)


class ContentText(_ContentProfile):
    """Content-only on MiniLM sentence vectors of titles, both domains in one space."""

    name = "content_text"

    def __init__(self, config: ContentTextConfig | None = None) -> None:
        super().__init__()
        self.config = config or ContentTextConfig()
        self.titles: dict[str, str] = {}

    def _item_vectors(self, data: TrainData) -> dict[str, np.ndarray]:
        from rgcd.training import text_encoder

        content = data.catalog.content
        photos = content.filter(pl.col("domain") == "photo")
        text = (pl.col("title").fill_null("") + pl.lit(" ")
                + pl.col("body_text").fill_null("")).str.strip_chars()
        popular = (data.domain("photo").group_by("item_id").len()
                   .sort(["len", "item_id"], descending=[True, False]).head(self.config.max_items))
        photos = photos.join(popular.select("item_id"), on="item_id").with_columns(text.alias("text"))
        rooms = _recent_rooms(data.catalog, self.config.rooms_per_author).with_columns(
            pl.col("title").fill_null("").alias("text"))
        live = content.filter(pl.col("domain") == "live")
        self.titles = dict(zip(live["item_id"].to_list(), live["title"].fill_null("").to_list(), strict=True))

        out: dict[str, np.ndarray] = {}
        photos = photos.filter(pl.col("text") != "")
        if not photos.is_empty():
            vectors = text_encoder.encode(photos["text"].to_list(), dtype=self.config.dtype)
            out.update(zip(photos["item_id"].to_list(), vectors, strict=True))
        rooms = rooms.filter(pl.col("text") != "")
        if not rooms.is_empty():
            authors = [f"author:{a}" for a in rooms["author_id"].to_list()]
            vectors = text_encoder.encode(rooms["text"].to_list(), dtype=self.config.dtype)
            out.update(_mean_by(authors, vectors))
        return out

    def _history(self, data: TrainData) -> pl.DataFrame:
        # Live history as authors: a room's own title is encoded only when it is a candidate.
        return data.interactions.with_columns(
            pl.when(pl.col("domain") == "live").then(pl.col("key")).otherwise(pl.col("item_id"))
            .alias("item_id"))

    def _candidate_vectors(self, item_ids: Sequence[str]) -> list[np.ndarray | None]:
        # A candidate room is described by its own name (encoded here, in one batch).
        from rgcd.training import text_encoder

        titles = [self.titles.get(i, "") if i not in self.vectors else "" for i in item_ids]
        todo = sorted({t for t in titles if t})
        encoded = (dict(zip(todo, text_encoder.encode(todo, dtype=self.config.dtype), strict=True))
                   if todo else {})
        return [self.vectors.get(i, encoded.get(t)) for i, t in zip(item_ids, titles, strict=True)]
