import numpy as np
import pytest

from rgcd.training.intervals import (
    bootstrap_p,
    holm,
    holm_levels,
    interval,
    paired_bootstrap,
    percentile_interval,
    resample_seeds,
    seed_means,
)


def test_holm_adjusts_by_rank_and_keeps_the_order():
    # sorted: 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])


def test_holm_levels_widen_the_intervals_of_the_smallest_p():
    assert holm_levels([0.01, 0.04, 0.03], alpha=0.05) == pytest.approx(
        [1 - 0.05 / 3, 0.95, 1 - 0.05 / 2])


def test_bootstrap_p_counts_both_tails_with_plus_one():
    # below-or-at 0: 1 of 4 -> 2/5; above-or-at 0: 3 of 4 -> 4/5; p = 2 x 2/5
    assert bootstrap_p(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(0.8)
    assert bootstrap_p(np.ones(99)) == pytest.approx(2 / 100)
    assert bootstrap_p(np.zeros(10)) == 1.0


def test_percentile_interval():
    assert percentile_interval(np.arange(101.0), level=0.9) == pytest.approx((5.0, 95.0))


def test_seed_means_are_weighted_case_means_per_seed():
    weights = np.array([[2, 0, 1], [0, 3, 0]], dtype=np.float32)
    delta = np.array([[1, 2, 3], [0, 0, 3]], dtype=np.float32)
    assert seed_means(delta, weights) == pytest.approx(np.array([[5 / 3, 1.0], [2.0, 0.0]]))
    one_seed = np.array([[4.0], [7.0]])
    assert resample_seeds(one_seed, np.random.default_rng(0)) == pytest.approx([4.0, 7.0])


def test_constant_differences_give_a_degenerate_interval_and_worlds_weigh_alike():
    stats, observed = paired_bootstrap([np.ones((1, 2)), np.full((2, 3), 3.0)], n_boot=50)
    assert observed == pytest.approx(2.0)  # mean of the two worlds' means, not of the 8 values
    assert stats == pytest.approx(np.full(50, 2.0))
    same = interval([np.zeros((3, 40))], n_boot=200)
    assert (same.delta, same.lo, same.hi, same.p) == (0.0, 0.0, 0.0, 1.0)
    assert (same.n_cases, same.n_seeds) == (40, 3)


def test_interval_width_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    delta = rng.normal(0.1, 1.0, size=(1, 2000))
    iv = interval([delta], n_boot=2000, seed=3)
    half = 1.96 * delta.std() / np.sqrt(2000)
    assert (iv.hi - iv.lo) / 2 == pytest.approx(half, rel=0.15)
    assert iv.lo < iv.delta < iv.hi and iv.p < 0.05


def test_seed_level_widens_the_interval_when_seeds_disagree():
    rng = np.random.default_rng(2)
    cases = rng.normal(0.0, 0.1, size=500)
    agree = np.stack([cases, cases, cases])
    disagree = np.stack([cases - 0.2, cases, cases + 0.2])
    narrow, wide = interval([agree], n_boot=1000), interval([disagree], n_boot=1000)
    assert narrow.delta == pytest.approx(wide.delta)
    assert (wide.hi - wide.lo) > 3 * (narrow.hi - narrow.lo)
