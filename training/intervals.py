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
    """(n_boot, n_cases) multinomial counts: how often each case is drawn in each resample.

    Drawn once per slice and shared by every model compared on it (common random numbers: every
    model's difference is measured on the same resamples).
    """
    return rng.multinomial(n_cases, np.full(n_cases, 1.0 / n_cases), size=n_boot).astype(np.float32)


def seed_means(delta: np.ndarray, weights: np.ndarray, chunk: int = 128) -> np.ndarray:
    """(n_boot, n_seeds): each resample's case mean of each seed's row of `delta` (n_seeds, n_cases)."""
    delta = np.atleast_2d(np.asarray(delta, dtype=np.float32))
    n_cases = delta.shape[1]
    out = np.empty((weights.shape[0], delta.shape[0]), dtype=np.float64)
    for start in range(0, weights.shape[0], chunk):  # (chunk x cases) at a time: bounded memory
        out[start:start + chunk] = weights[start:start + chunk] @ delta.T / n_cases
    return out


def resample_seeds(means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_boot,): per resample, the mean over seeds drawn with replacement from `means` (n_boot, n_seeds)."""
    n_boot, n_seeds = means.shape
    if n_seeds == 1:
        return means[:, 0].copy()
    picks = rng.integers(n_seeds, size=(n_boot, n_seeds))
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


def paired_bootstrap(strata: Sequence[np.ndarray], n_boot: int = 2000,
                     seed: int = 0) -> tuple[np.ndarray, float]:
    """Bootstrap statistics of the mean paired difference (module doc) and its point estimate.

    `strata`: one (n_seeds, n_cases) array of per-case differences per world. Returns (the
    n_boot resampled statistics, the observed statistic: mean over worlds of the all-seed,
    all-case mean).
    """
    if not strata:
        raise ValueError("no differences to bootstrap")
    rng = np.random.default_rng(seed)
    stats = np.zeros(n_boot, dtype=np.float64)
    observed = 0.0
    for delta in strata:
        delta = np.atleast_2d(np.asarray(delta, dtype=np.float32))
        if delta.shape[1] == 0:
            raise ValueError("a stratum without cases has no difference")
        stats += resample_seeds(seed_means(delta, case_weights(delta.shape[1], n_boot, rng)), rng)
        observed += float(delta.astype(np.float64).mean())
    return stats / len(strata), observed / len(strata)


def interval(strata: Sequence[np.ndarray], n_boot: int = 2000, seed: int = 0,
             level: float = 0.95) -> Interval:
    """The paired bootstrap `Interval` of a difference (see `paired_bootstrap`)."""
    stats, observed = paired_bootstrap(strata, n_boot, seed)
    lo, hi = percentile_interval(stats, level)
    shapes = [np.atleast_2d(d).shape for d in strata]
    return Interval(observed, lo, hi, bootstrap_p(stats), level, sum(s[1] for s in shapes),
                    max(s[0] for s in shapes))


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
