"""The creator link: a streamer is the same `author_id` as a short-video creator.

`creator_link` ranks a live room (live-room) or a live author (klm3-cdr) by how many of that
author's short videos the user played (positive plays, >= 10% progress) in the protocol's training
split, so before the cut: no model sees the test period's plays, and this rule does not either (in
production it could count up to the request; the evaluation's `not_linked` slice uses the request
time, so a positive it calls linked may be one this rule could not yet see). Nothing is learned:
the rule is what a team would ship before any model, and what every model must beat.

`creator_link_popularity` is the same rule with the popularity baseline as a tie-breaker,
lexicographically: rooms are ordered first by the user's plays of their creator, then, among equal
counts (and so among every room whose creator the user never played), by the popularity baseline's
training count of their author. Fixed by its definition, nothing mixed or tuned: the score is
plays + popularity / (max popularity + 1), and the second term is always below 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from rgcd.training.baselines.popularity import Popularity
from rgcd.training.recommender import UNKNOWN_SCORE, ItemCatalog, TrainData


def item_authors(catalog: ItemCatalog, item_ids: Sequence[str]) -> np.ndarray:
    """The live author of each item (a room's streamer, or the author of an `author:` key); -1 for a
    short video or a room the catalogue does not know."""
    out = np.full(len(item_ids), -1, dtype=np.int64)
    for i, item in enumerate(item_ids):
        if item.startswith("author:"):
            out[i] = int(item.removeprefix("author:"))
        elif item.startswith("live:"):
            out[i] = catalog.room_author.get(item, -1)
    return out


@dataclass
class CreatorLinkConfig:
    """No knobs: the count of the user's training plays of the creator is the score."""


class CreatorLink:
    """Rooms ranked by the user's training plays of the room's creator (see module doc)."""

    name = "creator_link"
    seed_independent = True  # fit reads no seed: evaluation fits it once for every seed

    def __init__(self, config: CreatorLinkConfig | None = None) -> None:
        self.config = config or CreatorLinkConfig()
        self.catalog: ItemCatalog | None = None
        self.pair_user = np.zeros(0, dtype=np.int64)
        self.pair_author = np.zeros(0, dtype=np.int64)
        self.pair_plays = np.zeros(0, dtype=np.float64)

    def fit(self, data: TrainData, seed: int) -> None:
        """Count each user's positive training plays per short-video author (seed unused)."""
        self.catalog = data.catalog
        photo_author = data.catalog.content.filter(pl.col("domain") == "photo").select(
            pl.col("item_id").alias("key"), "author_id")
        plays = (data.domain("photo").join(photo_author, on="key")
                 .group_by("user_id", "author_id").len().sort("user_id", "author_id"))
        self.pair_user = plays["user_id"].to_numpy().astype(np.int64)
        self.pair_author = plays["author_id"].to_numpy().astype(np.int64)
        self.pair_plays = plays["len"].to_numpy().astype(np.float64)

    def plays(self, user_ids: np.ndarray, authors: np.ndarray) -> np.ndarray:
        """(len(user_ids), len(authors)) training plays of each author by each user (0 if none)."""
        users = np.asarray(user_ids, dtype=np.int64)
        uniq_a, a_inv = np.unique(authors, return_inverse=True)
        sel = np.isin(self.pair_user, users) & np.isin(self.pair_author, uniq_a)
        order = np.argsort(users, kind="stable")
        rows = order[np.searchsorted(users[order], self.pair_user[sel])]
        dense = np.zeros((len(users), len(uniq_a)), dtype=np.float64)
        dense[rows, np.searchsorted(uniq_a, self.pair_author[sel])] = self.pair_plays[sel]
        return dense[:, a_inv]

    def score(self, user_ids: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """Plays of each item's creator by each user; short videos and unknown rooms UNKNOWN_SCORE."""
        assert self.catalog is not None, "fit first"
        authors = item_authors(self.catalog, item_ids)
        scores = self.plays(user_ids, authors)
        scores[:, authors < 0] = UNKNOWN_SCORE
        return scores


class CreatorLinkPopularity(CreatorLink):
    """`creator_link`, ties (and unlinked rooms) ordered by popularity: lexicographic (module doc)."""

    name = "creator_link_popularity"

    def __init__(self, config: CreatorLinkConfig | None = None) -> None:
        super().__init__(config)
        self.popularity = Popularity()

    def fit(self, data: TrainData, seed: int) -> None:
        """The creator counts and the popularity baseline, both on the training split (seed unused)."""
        super().fit(data, seed)
        self.popularity.fit(data, seed)

    def score(self, user_ids: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """Plays of the creator + popularity / (max popularity + 1): plays first, popularity second."""
        scores = super().score(user_ids, item_ids)
        pop = self.popularity.score(np.zeros(1, dtype=np.int64), item_ids)[0].astype(np.float64)
        pop[pop < 0] = 0.0  # an author never seen in training: least popular
        top = max(self.popularity.counts.values(), default=0)
        known = scores[0] > UNKNOWN_SCORE if len(scores) else np.zeros(len(item_ids), dtype=bool)
        scores[:, known] += pop[known] / (top + 1.0)
        return scores
