"""EMCDR-style mapping (Man et al., IJCAI 2017): embed each domain, then map source to target.

1. BPR-MF on short videos gives every user a source vector; BPR-MF on live gives users with live
   history a target vector (the same code as the `bpr_mf` baseline).
2. An MLP (dim -> 2*dim -> dim, tanh) learns source vector -> target vector on the users present
   in both domains, by mean squared error.
3. Scoring: a user with live history keeps their own target vector; a user with only short-video
   history gets the mapped one (EMCDR's cold-start case); a user with neither is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from rgcd.training.baselines.bpr_mf import BPRConfig, train_bpr
from rgcd.training.recommender import IndexedVectors, TrainData, VectorScorer


@dataclass
class EMCDRConfig:
    """Both domains' MF budgets and the mapping's; common defaults, not tuned."""

    source: BPRConfig = field(default_factory=BPRConfig)
    target: BPRConfig = field(default_factory=BPRConfig)
    map_steps: int = 300
    map_lr: float = 0.01


class EMCDR(VectorScorer):
    """Short-video user vectors mapped into the live space (see module doc)."""

    name = "emcdr"

    def __init__(self, config: EMCDRConfig | None = None) -> None:
        super().__init__()
        self.config = config or EMCDRConfig()
        self.n_overlap = 0

    def fit(self, data: TrainData, seed: int) -> None:
        """Two BPR-MFs, then the mapping on overlapping users."""
        cfg = self.config
        self.catalog = data.catalog
        src_users, _ = train_bpr(data.domain("photo"), cfg.source, seed)
        tgt_users, self.items = train_bpr(data.domain("live"), cfg.target, seed + 1)
        overlap = sorted(set(src_users.index) & set(tgt_users.index))
        self.n_overlap = len(overlap)
        dim_s, dim_t = src_users.vectors.shape[1], tgt_users.vectors.shape[1]
        torch.manual_seed(seed)
        mlp = torch.nn.Sequential(torch.nn.Linear(dim_s, 2 * dim_t), torch.nn.Tanh(),
                                  torch.nn.Linear(2 * dim_t, dim_t))
        if overlap:
            x = torch.from_numpy(src_users.take(overlap)[0])
            y = torch.from_numpy(tgt_users.take(overlap)[0])
            opt = torch.optim.Adam(mlp.parameters(), lr=cfg.map_lr, fused=True)
            for _ in range(cfg.map_steps):  # full batch: overlapping users are few and small
                loss = torch.nn.functional.mse_loss(mlp(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        only_src = sorted(set(src_users.index) - set(tgt_users.index))
        with torch.no_grad():
            mapped = mlp(torch.from_numpy(src_users.take(only_src)[0])).numpy() if only_src else None
        ids = list(tgt_users.index) + only_src
        vecs = tgt_users.vectors if mapped is None else np.vstack([tgt_users.vectors, mapped])
        self.users = IndexedVectors(ids, vecs)
