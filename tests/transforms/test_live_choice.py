"""The live-session rule (transforms/latent.py: LiveChoice): the linear-time sampler draws exactly the
distribution `probabilities` writes out (the one the oracle scores with)."""

from __future__ import annotations

import numpy as np

from rgcd.transforms.latent import BUCKET_MS, LiveChoice, LiveRoutes

T0 = 17 * 3_600_000 + 1_234_567  # 17:20 UTC: the hour after is prime time (the evening share)
ROUTES = LiveRoutes(linked=0.3, popularity=0.1, popularity_evening=0.1, chance=0.1)


def _choice(seed: int = 0) -> LiveChoice:
    rng = np.random.default_rng(seed)
    n_users, n_topics, n_rooms, n_authors = 4, 5, 60, 12
    interest = rng.dirichlet(np.full(n_topics, 0.5), size=n_users)
    start = T0 + np.sort(rng.integers(0, 6 * BUCKET_MS, n_rooms))
    end = start + rng.integers(BUCKET_MS // 3, 4 * BUCKET_MS, n_rooms)
    author = rng.integers(0, n_authors, n_rooms)
    keys = np.unique(rng.integers(0, n_users, 20) * n_authors + rng.integers(0, n_authors, 20))
    plays = rng.integers(1, 9, len(keys))
    return LiveChoice(interest, rng.integers(0, n_topics, n_rooms), rng.lognormal(0, 1, n_rooms), author,
                      start, end, keys, plays, n_authors)


def test_sampler_draws_the_rule_probabilities_write_out():
    c = _choice()
    rng = np.random.default_rng(1)
    draws = 40_000
    for user, t in ((0, T0 + 2 * BUCKET_MS + 123), (1, T0 + 3 * BUCKET_MS + 77_777), (3, 18 * 3_600_000 + 5)):
        p = c.probabilities(np.array([user]), np.array([t]), np.arange(len(c.start)), ROUTES)[0]
        assert c.linked_on_air(np.array([user]), np.array([t]))[0] > 0  # the linked route is in play
        assert abs(p.sum() - 1) < 1e-9 and (p[(c.start > t) | (c.end <= t)] == 0).all()
        got = c.sample(rng, np.full(draws, user), np.full(draws, t), ROUTES)
        freq = np.bincount(got, minlength=len(p)) / draws
        # every drawn room has probability > 0; frequencies within 4.5 standard errors
        assert (p[freq > 0] > 0).all()
        se = np.sqrt(p * (1 - p) / draws) + 1e-4
        assert (np.abs(freq - p) < 4.5 * se).all(), np.abs(freq - p).max()


def test_rows_do_not_depend_on_which_candidates_are_asked():
    c = _choice(2)
    t = np.array([T0 + 2 * BUCKET_MS + 5])
    on = np.flatnonzero((c.start <= t[0]) & (t[0] < c.end))
    full = c.probabilities(np.array([2]), t, on, ROUTES)[0]
    part = c.probabilities(np.array([2]), t, on[::2], ROUTES)[0]
    assert np.allclose(full[::2], part)


def test_nothing_on_air_no_room():
    c = _choice(3)
    t = np.array([int(c.end.max()) + 1])
    assert c.sample(np.random.default_rng(0), np.array([0]), t, ROUTES)[0] == -1
    assert c.probabilities(np.array([0]), t, np.arange(len(c.start)), ROUTES).sum() == 0
