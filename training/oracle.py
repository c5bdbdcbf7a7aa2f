"""The oracle: an upper bound that only a synthetic world can have. It is not a model.

It ranks candidates by the demo generator's own probability that this user engages this item,
read from the world's latent truth (`rgcd.transforms.latent.load_latent`): for live-room requests,
exactly the rule the generator drew the sessions from (`LiveChoice`, at the request time, over
the rooms on air); for klm3-cdr's live authors, that rule averaged over the window (a creator's
rooms weighted by popularity and time on air; prime time counted at its average share). Nothing
can do better in expectation, so a model's share of the oracle's HR@10 / NDCG@10 says how much of
what the data allows it reaches. Real data has no oracle: `rgcd evaluate` adds it only on worlds
that carry the truth, and the report labels it as this upper bound wherever it appears.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from rgcd.training.recommender import UNKNOWN_SCORE, TrainData
from rgcd.transforms.latent import LatentTruth, LiveChoice

NAME = "oracle"
LABEL = "oracle (upper bound: the generator's own probabilities; synthetic world only, not a model)"
# On klm3-cdr the rule is averaged over the window (no request time), so a rule that reads the
# user's realised plays can beat it on a slice (demo world: creator_link on tail items).
LABEL_WINDOW = ("oracle (reference, not a bound on klm3-cdr: the generator's probabilities averaged over "
                "the window; synthetic world only, not a model)")


def label(protocol: str) -> str:
    """The oracle's row label in a protocol's table."""
    return LABEL_WINDOW if protocol == "klm3-cdr" else LABEL


class Oracle:
    """Scores by the latent truth; `fit` learns nothing (the truth is given, not estimated)."""

    name = NAME
    seed_independent = True  # fit reads no seed: evaluation fits it once for every seed

    def __init__(self, truth: LatentTruth) -> None:
        self.truth = truth
        self.routes = truth.routes
        users = truth.users
        self.user_index = {int(u): i for i, u in enumerate(users["user_id"].to_list())}
        interest = np.stack(users["interests"].to_numpy()).astype(np.float64)
        rooms = truth.items.filter(pl.col("domain") == "live").sort("start_ms", maintain_order=True)
        authors = truth.items["author_id"].unique().sort().to_numpy()
        self.author_index = {int(a): i for i, a in enumerate(authors)}
        n_a = len(authors)
        room_author = np.searchsorted(authors, rooms["author_id"].to_numpy())
        ua = truth.user_authors
        ua_user = np.array([self.user_index.get(int(u), -1) for u in ua["user_id"].to_list()], np.int64)
        ua_author = np.searchsorted(authors, ua["author_id"].to_numpy())
        keep = ua_user >= 0
        keys = ua_user[keep] * n_a + ua_author[keep]
        order = np.argsort(keys, kind="stable")
        self.choice = LiveChoice(interest, rooms["topic"].to_numpy(), rooms["weight"].to_numpy(), room_author,
                                 rooms["start_ms"].to_numpy(), rooms["end_ms"].to_numpy(), keys[order],
                                 ua["plays"].to_numpy()[keep][order], n_a)
        self.room_index = {r: i for i, r in enumerate(rooms["item_id"].to_list())}
        self._author_marginals(room_author, n_a, interest.shape[1])

    def _author_marginals(self, room_author: np.ndarray, n_a: int, n_topics: int) -> None:
        """Per creator: popularity x time on air of their rooms, per topic (the window average)."""
        c = self.choice
        mass = c.weight * (c.end - c.start)
        self.author_topic = np.zeros((n_a, n_topics))
        np.add.at(self.author_topic, (room_author, c.topic), mass)
        self.author_time = np.bincount(room_author, weights=(c.end - c.start).astype(float), minlength=n_a)
        # each user's plays of creators who stream: the creator-linked route's total
        streams = self.author_time[c.linked_keys % n_a] > 0
        self.linked_total = np.bincount(c.linked_keys[streams] // n_a, weights=c.linked_plays[streams],
                                        minlength=c.interest.shape[0])

    def fit(self, data: TrainData, seed: int) -> None:
        """Nothing to learn: the truth is given."""

    def _users(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.array([self.user_index.get(int(u), -1) for u in user_ids], dtype=np.int64)
        return np.maximum(idx, 0), idx >= 0

    def score(self, user_ids: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """Window-averaged probability of each (user, creator); a room scores as its creator."""
        users, known = self._users(user_ids)
        authors = np.full(len(item_ids), -1, dtype=np.int64)
        for j, item in enumerate(item_ids):
            if item.startswith("author:"):
                authors[j] = self.author_index.get(int(item.split(":", 1)[1]), -1)
            elif item in self.room_index:
                authors[j] = self.choice.author[self.room_index[item]]
        ok = authors >= 0
        a = np.maximum(authors, 0)
        r = self.routes
        c = self.choice
        topic_total = np.maximum(self.author_topic.sum(axis=0), 1e-300)
        p_interest = c.interest[users] @ (self.author_topic[a] / topic_total).T
        linked = self._plays(users[:, None] * c.n_authors + a[None, :])
        total = self.linked_total[users][:, None]
        share_linked = np.where(total > 0, r.linked, 0.0)
        share_pop = r.popularity + 0.5 * r.popularity_evening  # prime time at its average share
        mass = self.author_topic.sum(axis=1)
        scores = ((1 - share_linked - share_pop - r.chance) * p_interest
                  + share_linked * linked / np.maximum(total, 1e-300)
                  + share_pop * (mass[a] / mass.sum())[None, :]
                  + r.chance * (self.author_time[a] / self.author_time.sum())[None, :])
        scores[:, ~ok] = UNKNOWN_SCORE
        scores[~known] = 0.0
        return scores

    def _plays(self, keys: np.ndarray) -> np.ndarray:
        lk = self.choice.linked_keys
        if len(lk) == 0:
            return np.zeros(keys.shape)
        pos = np.minimum(np.searchsorted(lk, keys), len(lk) - 1)
        return np.where(lk[pos] == keys, self.choice.linked_plays[pos], 0.0)

    def score_at(self, user_ids: np.ndarray, item_ids: Sequence[str], times_ms: np.ndarray) -> np.ndarray:
        """(len(user_ids), len(item_ids)): the generator's P(room | user, request time), case by case."""
        users, known = self._users(user_ids)
        cand = np.array([self.room_index.get(i, -1) for i in item_ids], dtype=np.int64)
        ok = cand >= 0
        scores = np.full((len(users), len(cand)), UNKNOWN_SCORE, dtype=np.float64)
        if ok.any():
            p = self.choice.probabilities(users, np.asarray(times_ms, dtype=np.int64), cand[ok], self.routes)
            scores[:, ok] = p
        scores[~known] = 0.0
        return scores
