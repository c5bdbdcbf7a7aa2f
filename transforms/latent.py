"""The demo world's latent truth: what the generator draws engagement from.

Only a synthetic world has this. `transforms/demo.py` writes it to `<demo folder>/latent/`, a side
folder the data contract does not name; ingest copies it untouched to `<workspace>/latent/`, and
evaluation's oracle (an upper bound, not a model) ranks with it. Files:

- `items.parquet`: item_id (`photo:<id>` / `live:<id>`), domain, topic (int, index into the
  demo's topics), author_id, weight (the item's popularity weight in the draws), start_ms and
  end_ms (rooms only: the drawn on-air interval, also for rooms still on air at the end).
- `users.parquet`: user_id, interests (list<float32>: the topic mixture), held_out (no live before
  the cut).
- `user_authors.parquet`: user_id, author_id, plays: a user's short-video plays of each creator in
  the window (the creator-linked route of live sessions goes to these creators' rooms).
- `params.json`: the routes' shares, the evening hours, the topic prior, a format version.

`LiveChoice` is the rule a live session follows: the generator samples rooms from it and the
oracle scores rooms with it, so both use one definition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

LATENT_DIR = "latent"
FORMAT_VERSION = 1
EVENING = (18, 23)  # hours (UTC, the demo users' clock) of prime time, inclusive


@dataclass(frozen=True)
class LiveRoutes:
    """Shares of the ways a user picks a room among those on air (the rest follows interest).

    - `linked`: a room of a creator whose short videos the user played, in proportion to plays;
    - `popularity`: the platform's popular rooms, whatever their topic (`popularity_evening` more
      in prime time, when feeds push what is trending);
    - `chance`: any room on air, uniformly;
    - interest (the remainder): a topic from the user's mixture, then a room of it by popularity.
    The last three are why behaviour pairs are often strong and unrelated by content.
    """

    linked: float = 0.25
    popularity: float = 0.10
    popularity_evening: float = 0.10
    chance: float = 0.08


@dataclass(frozen=True)
class LatentTruth:
    """The generator's latent variables (see the module docstring for the columns)."""

    items: pl.DataFrame
    users: pl.DataFrame
    user_authors: pl.DataFrame
    params: dict

    @property
    def routes(self) -> LiveRoutes:
        return LiveRoutes(**self.params["live_routes"])


def write_latent(out: Path, truth: LatentTruth) -> Path:
    """Write the truth to `<out>/latent/`; returns that folder."""
    from rgcd.atomic import write_json_atomic, write_parquet_atomic

    folder = Path(out) / LATENT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(truth.items, folder / "items.parquet")
    write_parquet_atomic(truth.users, folder / "users.parquet")
    write_parquet_atomic(truth.user_authors, folder / "user_authors.parquet")
    # params.json last: its presence says the folder is complete (read_latent looks for it)
    write_json_atomic(truth.params, folder / "params.json")
    return folder


def read_latent(folder: Path) -> LatentTruth | None:
    """The truth in `folder` (a `latent/` folder), or None when there is none."""
    folder = Path(folder)
    if not (folder / "params.json").exists():
        return None
    return LatentTruth(items=pl.read_parquet(folder / "items.parquet"),
                       users=pl.read_parquet(folder / "users.parquet"),
                       user_authors=pl.read_parquet(folder / "user_authors.parquet"),
                       params=json.loads((folder / "params.json").read_text()))


def has_latent(ws) -> bool:
    """Whether workspace `ws` holds the latent truth of a synthetic world (without reading it)."""
    return (Path(ws.root) / LATENT_DIR / "params.json").exists()


def load_latent(ws) -> LatentTruth | None:
    """The latent truth of the world ingested into workspace `ws`; None for real data."""
    return read_latent(Path(ws.root) / LATENT_DIR)


def copy_latent(src: Path, ws) -> bool:
    """Copy `<src>/latent/` to `<ws>/latent/` whole (replacing what was there); False if none."""
    import shutil

    folder = Path(src) / LATENT_DIR
    if not (folder / "params.json").exists():
        return False
    target = Path(ws.root) / LATENT_DIR
    staged = target.with_name(LATENT_DIR + ".tmp")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(folder, staged)
    shutil.rmtree(target, ignore_errors=True)
    staged.rename(target)
    return True


def params_doc(routes: LiveRoutes, topic_prior: np.ndarray, **extra) -> dict:
    """params.json's content."""
    return {"version": FORMAT_VERSION, "live_routes": asdict(routes), "evening_hours": list(EVENING),
            "topic_prior": [float(x) for x in topic_prior], **extra}


def is_evening(t_ms: np.ndarray) -> np.ndarray:
    hour = (np.asarray(t_ms) // 3_600_000) % 24
    return (hour >= EVENING[0]) & (hour <= EVENING[1])


def _sum_by_sorted_group(x: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Row sums of `x` over the columns of each group, columns sorted by group: (rows, n_groups)."""
    out = np.zeros((x.shape[0], n_groups))
    if len(group):
        starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
        out[:, group[starts]] = np.add.reduceat(x, starts, axis=1, dtype=np.float64)
    return out


class LiveChoice:
    """P(user enters room r | user, time t), over the rooms on air at t: the generator's rule.

    Arrays are indexed by position: users 0..n_users-1, rooms 0..n_rooms-1 sorted by start,
    creators 0..n_authors-1. `linked_keys` (sorted) are `user * n_authors + author` with
    `linked_plays` the user's plays of that creator.
    """

    def __init__(self, interest: np.ndarray, room_topic: np.ndarray, room_weight: np.ndarray,
                 room_author: np.ndarray, room_start: np.ndarray, room_end: np.ndarray,
                 linked_keys: np.ndarray, linked_plays: np.ndarray, n_authors: int) -> None:
        order = np.argsort(room_start, kind="stable")
        if not (order == np.arange(len(order))).all():
            raise ValueError("LiveChoice needs rooms sorted by start")
        self.interest = interest
        self.topic = room_topic
        self.weight = room_weight.astype(np.float64)
        self.author = room_author
        self.start = room_start
        self.end = room_end
        self.longest = int((room_end - room_start).max()) if len(room_start) else 0
        self.linked_keys = linked_keys
        self.linked_plays = linked_plays.astype(np.float64)
        self.n_authors = n_authors

    def rooms_around(self, t_lo: int, t_hi: int) -> np.ndarray:
        """Rooms on air at some moment of [t_lo, t_hi]."""
        lo = np.searchsorted(self.start, t_lo - self.longest, side="left")
        hi = np.searchsorted(self.start, t_hi, side="right")
        cand = np.arange(lo, hi)
        return cand[self.end[cand] > t_lo]

    def _linked(self, user: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """(len(user), len(cand)): the user's plays of each candidate room's creator."""
        out = np.zeros((len(user), len(cand)), dtype=np.float32)
        if len(self.linked_keys) == 0 or len(cand) == 0:
            return out
        # The linked entries of these users (keys are sorted by user, then creator) ...
        lo = np.searchsorted(self.linked_keys, user.astype(np.int64) * self.n_authors)
        hi = np.searchsorted(self.linked_keys, (user.astype(np.int64) + 1) * self.n_authors)
        row = np.repeat(np.arange(len(user)), hi - lo)
        entry = np.arange(int((hi - lo).sum())) - np.repeat(np.cumsum(hi - lo) - (hi - lo), hi - lo) \
            + np.repeat(lo, hi - lo)
        author = self.linked_keys[entry] % self.n_authors
        # ... matched to the candidate rooms of the same creator (a creator has few rooms on air).
        by_author = np.argsort(self.author[cand], kind="stable")
        sorted_authors = self.author[cand][by_author]
        first = np.searchsorted(sorted_authors, author, side="left")
        count = np.searchsorted(sorted_authors, author, side="right") - first
        hit = np.repeat(np.arange(len(author)), count)
        col = by_author[np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
                        + np.repeat(first, count)]
        out[row[hit], col] = self.linked_plays[entry[hit]]
        return out

    def probabilities(self, user: np.ndarray, t_ms: np.ndarray, cand: np.ndarray,
                      routes: LiveRoutes) -> np.ndarray:
        """(len(user), len(cand)) probabilities; 0 off air; a row with no room on air is all 0.

        With on(r) the on-air mask at t and w(r) the room weight:
        P(r) = s_interest * theta(u, topic r) * w(r) / W_topic(t) + s_popularity * w(r) / W(t)
             + s_chance / N(t) + s_linked * plays(u, creator r) / L(u, t), on air rooms only.
        Every term is a per-row scale times a per-cell value, so the sum is computed as
        on * (w * B[row, topic] + c[row]) + linked * l[row] in float32.
        """
        order = np.argsort(self.topic[cand], kind="stable")  # grouped by topic: sums by reduceat
        cand_sorted = cand[order]
        t = np.asarray(t_ms)[:, None]
        on = (self.start[cand_sorted][None, :] <= t) & (t < self.end[cand_sorted][None, :])
        w = self.weight[cand_sorted].astype(np.float32)
        w_on = np.where(on, w[None, :], np.float32(0))
        topic = self.topic[cand_sorted]
        w_topic = _sum_by_sorted_group(w_on, topic, self.interest.shape[1])  # (n, topics)
        theta = self.interest[user] * (w_topic > 0)
        theta /= np.maximum(theta.sum(axis=1, keepdims=True), 1e-300)
        linked = self._linked(user, cand_sorted)
        linked *= on
        linked_total = linked.sum(axis=1, keepdims=True, dtype=np.float64)
        share_linked = np.where(linked_total > 0, routes.linked, 0.0)
        share_pop = routes.popularity + routes.popularity_evening * is_evening(t_ms)[:, None]
        share_interest = 1.0 - share_linked - share_pop - routes.chance
        w_total = w_topic.sum(axis=1, keepdims=True)
        n_on = on.sum(axis=1, keepdims=True)
        # a row with nothing on air has w_total 0: its popularity term is 0, not 1/0
        pop = np.divide(share_pop, w_total, out=np.zeros_like(w_total), where=w_total > 0)
        per_topic = (share_interest * theta / np.maximum(w_topic, 1e-300) + pop).astype(np.float32)
        chance = (routes.chance / np.maximum(n_on, 1)).astype(np.float32)
        link = (share_linked / np.maximum(linked_total, 1e-300)).astype(np.float32)
        p_sorted = np.take(per_topic, topic, axis=1)
        p_sorted *= w[None, :]
        p_sorted += chance
        p_sorted *= on
        p_sorted += linked * link
        if (order == np.arange(len(order))).all():
            return p_sorted
        out = np.empty_like(p_sorted)
        out[:, order] = p_sorted
        return out

    def sample(self, rng: np.random.Generator, user: np.ndarray, t_ms: np.ndarray, routes: LiveRoutes,
               chunk: int = 512, max_span_ms: int = 1_800_000) -> np.ndarray:
        """One room per (user, time) request, -1 where nothing is on air; requests sorted by time."""
        out = np.full(len(user), -1, dtype=np.int64)
        lo = 0
        while lo < len(user):
            # A chunk is at most `chunk` requests and at most `max_span_ms` long, so that its
            # candidates are little more than the rooms on air at one moment.
            hi = min(lo + chunk, int(np.searchsorted(t_ms, t_ms[lo] + max_span_ms, side="left")))
            hi = max(hi, lo + 1)
            sl = slice(lo, hi)
            lo = hi
            t = t_ms[sl]
            cand = self.rooms_around(int(t.min()), int(t.max()))
            if len(cand) == 0:
                continue
            cand = cand[np.argsort(self.topic[cand], kind="stable")]
            cum = np.cumsum(self.probabilities(user[sl], t, cand, routes), axis=1)
            total = cum[:, -1]
            draw = rng.random(len(t)) * total
            pick = np.minimum((cum <= draw[:, None]).sum(axis=1), len(cand) - 1)
            out[sl] = np.where(total > 0, cand[pick], -1)
        return out
