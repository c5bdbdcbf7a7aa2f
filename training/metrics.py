"""Top-K ranking metrics: small pure functions of a ranked list and a set of positives.

Definitions (the ones RecBole and the KuaiLive-M3 benchmark use):

- HR@K (hit rate): 1 if any of the first K ranked items is a positive, else 0.
- Recall@K: hits in the first K / number of positives (not min(positives, K)).
- NDCG@K: DCG of the first K, binary gains, discount 1 / log2(rank + 1) with ranks from 1,
  divided by the ideal DCG of min(positives, K) positives ranked first.

A case with no positives has no defined metric; callers drop such cases, these functions raise.
The batched functions compute the same numbers for many cases at once from a boolean hit matrix,
so evaluation never loops in Python over users.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np


def _check(positives: Collection, k: int) -> None:
    if k <= 0:
        raise ValueError(f"K must be positive, got {k}")
    if len(positives) == 0:
        raise ValueError("a case without positives has no ranking metric; drop it before scoring")


def hit_rate(ranked: Sequence, positives: Collection, k: int) -> float:
    """1.0 if any of the first k items of `ranked` is in `positives`, else 0.0."""
    _check(positives, k)
    return float(any(item in positives for item in ranked[:k]))


def recall(ranked: Sequence, positives: Collection, k: int) -> float:
    """Positives among the first k items of `ranked`, divided by the number of positives."""
    _check(positives, k)
    return sum(1 for item in ranked[:k] if item in positives) / len(positives)


def ndcg(ranked: Sequence, positives: Collection, k: int) -> float:
    """Binary-gain NDCG of the first k items; the ideal ranks min(|positives|, k) positives first."""
    _check(positives, k)
    dcg = sum(1.0 / np.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in positives)
    ideal = sum(1.0 / np.log2(rank + 2) for rank in range(min(len(positives), k)))
    return float(dcg / ideal)


METRICS = {"HR": hit_rate, "Recall": recall, "NDCG": ndcg}


# ---- batched: one row per case ------------------------------------------------------------------

def batch_hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    """Per-row HR@k from `hits` (n_cases, >= k) where hits[i, r] says rank r+1 of case i is positive."""
    return hits[:, :k].any(axis=1).astype(np.float64)


def batch_recall(hits: np.ndarray, n_positives: np.ndarray, k: int) -> np.ndarray:
    """Per-row Recall@k: hits in the first k over each case's number of positives (all > 0)."""
    return hits[:, :k].sum(axis=1) / n_positives


def batch_ndcg(hits: np.ndarray, n_positives: np.ndarray, k: int) -> np.ndarray:
    """Per-row NDCG@k with binary gains; the ideal DCG is over min(n_positives, k) positives."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal_cum = np.cumsum(discounts)
    ideal = ideal_cum[np.minimum(n_positives, k) - 1]
    return dcg / ideal


def batch_metrics(hits: np.ndarray, n_positives: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Every metric at every K for each case: {'HR@10': per-case values, 'Recall@10': ..., ...}."""
    n_positives = np.asarray(n_positives)
    if (n_positives <= 0).any():
        raise ValueError("every case needs at least one positive; drop cases without positives first")
    if hits.shape[1] < max(ks):
        raise ValueError(f"hit matrix has {hits.shape[1]} ranks, fewer than K={max(ks)}")
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"HR@{k}"] = batch_hit_rate(hits, k)
        out[f"Recall@{k}"] = batch_recall(hits, n_positives, k)
        out[f"NDCG@{k}"] = batch_ndcg(hits, n_positives, k)
    return out
