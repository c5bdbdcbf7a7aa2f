"""The one interface every model is evaluated through: baselines and the full method alike.

A model is fitted on a protocol's training split (`TrainData`) and then scores users against
candidate item ids. Item ids are the marts' strings: `'photo:<photo_id>'`, `'live:<live_id>'`
(a live room) and `'author:<author_id>'` (a live author, the KuaiLive-M3 benchmark's target).

Live rooms are short-lived: most rooms a user is asked about at test time did not exist during
training. Collaborative models therefore learn live *authors*; `ItemCatalog.cf_keys` maps a room
to its author's key so that every model scores a new room through who streams it. Content models
may use the room's own vectors instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import torch

# Score for an item a model has no representation for: ranked after everything it can score.
UNKNOWN_SCORE = -1e9


class ItemCatalog:
    """Item content and the room -> author map, read from the `item_content` mart.

    `content` has the mart's columns (item_id, domain, author_id, title, body_text, mm_embedding,
    start_timestamp, ...). `cut`, when set, is the protocol's train/test time: author-level
    content is then averaged over rooms that started before it, so no future room leaks in.
    """

    def __init__(self, content: pl.DataFrame, cut: datetime | None = None) -> None:
        self.content = content
        self.cut = cut
        live = content.filter(pl.col("domain") == "live")
        self.room_author: dict[str, int] = dict(zip(live["item_id"].to_list(),
                                                    live["author_id"].to_list(), strict=True))

    def cf_keys(self, item_ids: Sequence[str]) -> list[str]:
        """Collaborative key of each item: a live room becomes `'author:<its author>'`."""
        out = []
        for item in item_ids:
            if item.startswith("live:"):
                author = self.room_author.get(item)
                out.append(f"author:{author}" if author is not None else item)
            else:
                out.append(item)
        return out

    def author_rooms(self) -> pl.DataFrame:
        """Live rooms usable to describe their author: started before `cut` when one is set."""
        live = self.content.filter(pl.col("domain") == "live")
        if self.cut is not None and "start_timestamp" in live.columns:
            live = live.filter(pl.col("start_timestamp") < self.cut)
        return live


@dataclass
class TrainData:
    """A protocol's training split.

    `interactions`: one row per positive training interaction, columns user_id (int64),
    item_id (the id as the protocol knows it: photo:, live: or author:), key (the collaborative
    key: photo items unchanged, live rooms as author:<id>), domain ('photo' | 'live'),
    event_timestamp. Nothing at or after the test period is in it.
    """

    protocol: str
    interactions: pl.DataFrame
    catalog: ItemCatalog

    def domain(self, name: str) -> pl.DataFrame:
        """The interactions of one domain."""
        return self.interactions.filter(pl.col("domain") == name)


@runtime_checkable
class Recommender(Protocol):
    """What evaluation needs from a model. `name` is its row in the report. A model whose fit reads
    no seed (nothing random) may say so with a class attribute `seed_independent = True`: evaluation
    then fits it once and ranks with each seed's tie-breaks (training/evaluation.py: run_seeds)."""

    name: str

    def fit(self, data: TrainData, seed: int) -> None:
        """Train on `data` only; same seed, same model."""
        ...

    def score(self, user_ids: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """Scores (len(user_ids), len(item_ids)), higher is better; UNKNOWN_SCORE where it cannot."""
        ...


class IndexedVectors:
    """Vectors looked up by string id; ids without a vector get a zero row and `known=False`."""

    def __init__(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        self.index = {item: i for i, item in enumerate(ids)}
        self.vectors = np.asarray(vectors, dtype=np.float32)

    def take(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(matrix (len(ids), dim), known mask)."""
        rows = np.array([self.index.get(i, -1) for i in ids], dtype=np.int64)
        known = rows >= 0
        out = np.zeros((len(ids), self.vectors.shape[1]), dtype=np.float32)
        out[known] = self.vectors[rows[known]]
        return out, known

    @property
    def ids(self) -> list[str]:
        """The ids in row order of `vectors`."""
        return sorted(self.index, key=self.index.__getitem__)


class VectorScorer:
    """The scoring half of the models that learn user and item vectors (BPR-MF, UniEmbed, EMCDR).

    `fit` sets `users`, `items` (live authors, and for UniEmbed short videos too) and `catalog`;
    `score` is their dot product, a live room scored through its author.
    """

    def __init__(self) -> None:
        self.users: IndexedVectors | None = None
        self.items: IndexedVectors | None = None
        self.catalog: ItemCatalog | None = None

    def score(self, user_ids: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """User x item dot products (see `dot_scores` for unknown ids)."""
        assert self.users is not None and self.items is not None and self.catalog is not None, "fit first"
        uv, uk = self.users.take([str(int(x)) for x in user_ids])
        iv, ik = self.items.take(self.catalog.cf_keys(item_ids))
        return dot_scores(uv, uk, iv, ik)


def sum_rows_by(index: np.ndarray, values: np.ndarray, n: int, take: np.ndarray | None = None) -> np.ndarray:
    """(n, d) float64 sums: row r adds up values[take[i]] (values[i] without `take`) over every i with
    index[i] == r, in the order of i. Bit for bit what `np.add.at(total, index, values[take])` into
    zeros computes, column by column through np.bincount, without the (len(index), d) gather:
    np.add.at with 2-D values took ~100 s of evaluate's CPU at the demo size (session 12's profile)."""
    out = np.empty((n, values.shape[1]), dtype=np.float64)
    for c in range(values.shape[1]):
        column = values[:, c] if take is None else values[take, c]
        out[:, c] = np.bincount(index, weights=column, minlength=n)
    return out


def dot_scores(users: np.ndarray, users_known: np.ndarray, items: np.ndarray,
               items_known: np.ndarray) -> np.ndarray:
    """User x item dot products; unknown items get UNKNOWN_SCORE, unknown users score 0 everywhere.

    A user the model knows nothing about scores every known item alike, so the ranking among
    them is the evaluator's seeded random tie-break: what the model knows is chance.
    """
    scores = users @ items.T
    scores[~users_known] = 0.0
    scores[:, ~items_known] = UNKNOWN_SCORE
    return scores.astype(np.float32, copy=False)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch threads, then restore the previous count.

    The baselines' batches are small (a few thousand rows, 32-d): one thread is as fast as two
    on an idle machine and much faster on a busy one, where threads wait on each other.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_LAST_PAIRS: list = [None, None]  # (weak reference to the frame, its result): every seed asks again


def indexed_pairs(interactions: pl.DataFrame) -> tuple[list[int], list[str], torch.Tensor, torch.Tensor]:
    """Unique (user_id, key) positives as index tensors into the sorted user ids and keys.

    Returns (user_ids, keys, u, i): row r of the pairs is user `user_ids[u[r]]` with `keys[i[r]]`.
    The last frame's answer is kept (its tensors are read, never written, by the trainers), so the
    seeds of one model on one split build it once (about 2 s at the demo size).
    """
    import weakref

    import torch

    ref, cached = _LAST_PAIRS
    if ref is not None and ref() is interactions:
        return cached

    pairs = interactions.select("user_id", "key").unique().sort("user_id", "key")
    users, keys = pairs["user_id"].unique().sort(), pairs["key"].unique().sort()
    u = torch.from_numpy(users.search_sorted(pairs["user_id"]).to_numpy().astype(np.int64))
    i = torch.from_numpy(keys.search_sorted(pairs["key"]).to_numpy().astype(np.int64))
    _LAST_PAIRS[:] = [weakref.ref(interactions), (users.to_list(), keys.to_list(), u, i)]
    return _LAST_PAIRS[1]


def forget_indexed_pairs() -> None:
    """Drop `indexed_pairs`' kept answer (its tensors outlive the frame they came from)."""
    _LAST_PAIRS[:] = [None, None]


def training_batches(n_rows: int, samples: int, batch_size: int, generator) -> Iterator:
    """Index batches (torch) over `n_rows` training rows until `samples` rows have been drawn.

    The budget is a number of samples, not of epochs: small data get many passes, large data
    a part of one, so every model costs about the same and none gets only a handful of steps.
    Each pass is a fresh permutation (from `generator`, so a seed fixes it).
    """
    import torch

    drawn = 0
    while drawn < samples and n_rows > 0:
        order = torch.randperm(n_rows, generator=generator)[: samples - drawn]
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]
        drawn += len(order)
