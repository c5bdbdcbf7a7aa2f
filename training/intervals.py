"""Paired bootstrap intervals of a metric difference, and Holm's correction: small pure functions.

A difference between two models is measured on the same test cases, so it is bootstrapped *paired*:
one resample of cases serves both models. Seeds (every learned seed: a model fitted again with
another seed) are a second level of resampling, and independent worlds (the benchmark's world
seeds) are strata, each resampled on its own:

    statistic = mean over worlds of ( mean over resampled seeds of ( mean over resampled cases of
                                      delta[seed, case] ) )

where delta[seed, case] = model's per-case metric - baseline's, both fitted with that seed. With
one seed the seed level changes nothing; with one world the stratum level changes nothing.

The interval is the percentile interval of the bootstrap statistic; the p-value of "no difference"
is the two-sided bootstrap p-value 2 min(P(stat <= 0), P(stat >= 0)), with the usual +1 so it is
never 0. Holm's step-down method then controls the family-wise error across a family of tests
(here: the slices of one model, protocol and metric).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A bootstrapped difference: its point estimate, percentile interval and p-value."""

    delta: float
    lo: float
    hi: float
    p: float
    level: float
    n_cases: int
    n_seeds: int


def case_weights(n_cases: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_cases) counts: how often each case is drawn (n_cases draws with replacement) in
    each resample. Shared by every comparison on the same cases (common random numbers)."""
    draws = rng.integers(n_cases, size=(n_boot, n_cases))
    offsets = (np.arange(n_boot) * n_cases)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_boot * n_cases).reshape(
        n_boot, n_cases).astype(np.float32)


def seed_means(delta: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n_boot, n_columns): each resample's weighted case mean of each column of `delta`, given as
    (n_columns, n_cases) (a comparison's seeds are its columns)."""
    delta = np.atleast_2d(np.asarray(delta, dtype=np.float32))
    return (weights @ delta.T).astype(np.float64) / delta.shape[1]


def seed_picks(n_boot: int, n_seeds: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_seeds) seed indices drawn with replacement; with one seed, that seed every time."""
    if n_seeds == 1:
        return np.zeros((n_boot, 1), dtype=np.int64)
    return rng.integers(n_seeds, size=(n_boot, n_seeds))


def resample_seeds(means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_boot,): per resample, the mean over seeds drawn with replacement from `means` (n_boot, n_seeds)."""
    picks = seed_picks(means.shape[0], means.shape[1], rng)
    return np.take_along_axis(means, picks, axis=1).mean(axis=1)


def percentile_interval(stat: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap statistics."""
    alpha = 1.0 - level
    lo, hi = np.quantile(stat, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_p(stat: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the difference is 0": 2 min(P(stat <= 0), P(stat >= 0)),
    each share counted as (count + 1) / (n + 1), capped at 1."""
    n = len(stat)
    below = (np.count_nonzero(stat <= 0) + 1) / (n + 1)
    above = (np.count_nonzero(stat >= 0) + 1) / (n + 1)
    return float(min(1.0, 2 * min(below, above)))


def bootstrap_differences(strata: Sequence[dict[str, np.ndarray]], n_boot: int = 2000, seed: int = 0,
                          chunk: int = 100) -> dict[str, tuple[np.ndarray, float]]:
    """Bootstrap statistics of many paired differences at once (module doc), sharing resamples.

    `strata`: one dict per world, comparison name -> (n_seeds, n_cases) per-case differences; in
    one world every comparison is on the same cases. Returns name -> (n_boot statistics, observed
    statistic), averaged over the worlds that have the comparison.
    """
    rng = np.random.default_rng(seed)
    sums: dict[str, np.ndarray] = {}
    observed: dict[str, float] = {}
    worlds: dict[str, int] = {}
    for stratum in strata:
        deltas = {k: np.atleast_2d(np.asarray(v, dtype=np.float32)) for k, v in stratum.items()}
        if not deltas:
            continue
        n_cases = {d.shape[1] for d in deltas.values()}
        if len(n_cases) != 1 or 0 in n_cases:
            raise ValueError(f"comparisons of one world must share their (non-empty) cases; got {n_cases}")
        names = list(deltas)
        stacked = np.concatenate([deltas[k] for k in names])  # (sum of seeds, n_cases)
        means = np.empty((n_boot, stacked.shape[0]), dtype=np.float64)
        for start in range(0, n_boot, chunk):  # bounded memory: chunk x n_cases weights at a time
            n = min(chunk, n_boot - start)
            means[start:start + n] = seed_means(stacked, case_weights(stacked.shape[1], n, rng))
        picks: dict[int, np.ndarray] = {}  # one draw of seeds per seed count: shared by comparisons
        col = 0
        for k in names:
            width = deltas[k].shape[0]
            if width not in picks:
                picks[width] = seed_picks(n_boot, width, rng)
            stats = np.take_along_axis(means[:, col:col + width], picks[width], axis=1).mean(axis=1)
            col += width
            sums[k] = sums.get(k, 0.0) + stats
            observed[k] = observed.get(k, 0.0) + float(deltas[k].astype(np.float64).mean())
            worlds[k] = worlds.get(k, 0) + 1
    return {k: (sums[k] / worlds[k], observed[k] / worlds[k]) for k in sums}


def paired_bootstrap(strata: Sequence[np.ndarray], n_boot: int = 2000,
                     seed: int = 0) -> tuple[np.ndarray, float]:
    """Bootstrap statistics of one paired difference (module doc) and its point estimate.

    `strata`: one (n_seeds, n_cases) array of per-case differences per world. Returns (the
    n_boot resampled statistics, the observed statistic: mean over worlds of the all-seed,
    all-case mean).
    """
    if not len(strata):
        raise ValueError("no differences to bootstrap")
    return bootstrap_differences([{"d": d} for d in strata], n_boot, seed)["d"]


def interval_from(stats: np.ndarray, observed: float, n_cases: int, n_seeds: int,
                  level: float = 0.95) -> Interval:
    """An `Interval` from bootstrap statistics."""
    lo, hi = percentile_interval(stats, level)
    return Interval(observed, lo, hi, bootstrap_p(stats), level, n_cases, n_seeds)


def interval(strata: Sequence[np.ndarray], n_boot: int = 2000, seed: int = 0,
             level: float = 0.95) -> Interval:
    """The paired bootstrap `Interval` of a difference (see `paired_bootstrap`)."""
    stats, observed = paired_bootstrap(strata, n_boot, seed)
    shapes = [np.atleast_2d(d).shape for d in strata]
    return interval_from(stats, observed, sum(s[1] for s in shapes), max(s[0] for s in shapes), level)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input's order: the i-th smallest p (from 1) is multiplied by
    (m - i + 1), running maximum taken so the adjusted values keep the order, capped at 1.
    Rejecting where the adjusted p <= alpha controls the family-wise error at alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m, dtype=np.float64)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


def holm_levels(p_values: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Per test, the confidence level of its interval at its Holm step: the i-th smallest p (from
    1) is tested at alpha / (m - i + 1), so its interval is drawn at 1 - alpha / (m - i + 1)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    out = np.empty(m, dtype=np.float64)
    out[order] = 1.0 - alpha / (m - np.arange(m))
    return out.tolist()
