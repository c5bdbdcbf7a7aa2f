"""BPR-MF on live data only: matrix factorisation with the Bayesian personalised ranking loss.

Users and live authors (the collaborative key of a live room) get `dim`-d vectors; for each
observed (user, author) pair a random author is drawn as the negative and the loss is
-log sigmoid(x_ui - x_uj) + l2 * (|u|^2 + |i|^2 + |j|^2). Short-video data is not used, so a
user without live history before the cut is unknown to it (scores are then a random order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from rgcd.training.recommender import (
    IndexedVectors,
    TrainData,
    VectorScorer,
    indexed_pairs,
    training_batches,
)


@dataclass
class BPRConfig:
    """Small fixed budget (the demo runs on 2 cores): defaults are common values, not tuned
    on the test split; 2^21 samples cost about 2 s on one core."""

    dim: int = 32
    samples: int = 2**21  # training rows drawn in all (several passes over small data)
    batch_size: int = 4096
    lr: float = 0.01
    l2: float = 1e-4


def train_bpr(pairs: pl.DataFrame, config: BPRConfig, seed: int) -> tuple[IndexedVectors, IndexedVectors]:
    """Fit BPR-MF on unique (user_id, key) pairs; returns (user vectors, item vectors) by id."""
    user_ids, item_ids, u, i = indexed_pairs(pairs)

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    users = torch.nn.Embedding(len(user_ids), config.dim)
    items = torch.nn.Embedding(len(item_ids), config.dim)
    for table in (users, items):
        torch.nn.init.normal_(table.weight, std=0.1, generator=gen)
    opt = torch.optim.Adam([users.weight, items.weight], lr=config.lr, fused=True)  # fused: 6x faster on CPU
    for b in training_batches(len(u), config.samples, config.batch_size, gen):
        ub, ib = users(u[b]), items(i[b])
        jb = items(torch.randint(len(item_ids), (len(b),), generator=gen))
        margin = (ub * ib).sum(-1) - (ub * jb).sum(-1)
        reg = config.l2 * (ub.pow(2).sum(-1) + ib.pow(2).sum(-1) + jb.pow(2).sum(-1))
        loss = (-torch.nn.functional.logsigmoid(margin) + reg).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (IndexedVectors([str(x) for x in user_ids], users.weight.detach().numpy()),
            IndexedVectors(item_ids, items.weight.detach().numpy()))


class BPRMF(VectorScorer):
    """BPR-MF trained on live interactions only."""

    name = "bpr_mf"

    def __init__(self, config: BPRConfig | None = None) -> None:
        super().__init__()
        self.config = config or BPRConfig()

    def fit(self, data: TrainData, seed: int) -> None:
        """Train on the live-domain training interactions."""
        self.catalog = data.catalog
        self.users, self.items = train_bpr(data.domain("live"), self.config, seed)

    def item_vectors(self) -> tuple[list[str], np.ndarray]:
        """The learned live-author vectors, for plots."""
        assert self.items is not None, "fit first"
        return self.items.ids, self.items.vectors
