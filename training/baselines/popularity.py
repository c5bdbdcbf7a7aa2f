"""Popularity: every user gets the same ranking, by training interactions of the item's key.

A live room is ranked by its author's training interactions (rooms are new at test time), so
popularity here means "the most watched streamers of the training period".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rgcd.training.recommender import UNKNOWN_SCORE, ItemCatalog, TrainData


@dataclass
class PopularityConfig:
    """No knobs: the count of positive training interactions is the score."""


class Popularity:
    """Most-popular baseline; the same ranking for every user."""

    name = "popularity"
    seed_independent = True  # fit reads no seed: evaluation fits it once for every seed

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()
        self.counts: dict[str, int] = {}
        self.catalog: ItemCatalog | None = None

    def fit(self, data: TrainData, seed: int) -> None:
        """Count positive training interactions per collaborative key (seed unused: no randomness)."""
        self.catalog = data.catalog
        self.counts = dict(data.interactions.group_by("key").len().iter_rows())

    def score(self, user_ids: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """The item's training count for every user; items never seen get UNKNOWN_SCORE."""
        assert self.catalog is not None, "fit first"
        keys = self.catalog.cf_keys(item_ids)
        row = np.array([self.counts.get(k, UNKNOWN_SCORE) for k in keys], dtype=np.float32)
        return np.broadcast_to(row, (len(user_ids), len(keys))).copy()
