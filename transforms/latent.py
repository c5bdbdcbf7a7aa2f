"""The demo world's latent truth: what the generator draws engagement from.

Only a synthetic world has this. `transforms/demo.py` writes it to `<demo folder>/latent/`, a side
folder the data contract does not name; ingest copies it untouched to `<workspace>/latent/`, and
evaluation's oracle (an upper bound, not a model) ranks with it. Files:

- `items.parquet`: item_id (`photo:<id>` / `live:<id>`), domain, topic (int, index into the
  demo's topics), author_id, weight (the item's popularity weight in the draws), start_ms and
  end_ms (rooms only: the drawn on-air interval, also for rooms still on air at the end), entity
  (the named entity the item's text mentions, null when none: see `knowledge.parquet`).
- `users.parquet`: user_id, interests (list<float32>: the LIVE topic mixture, the one live sessions
  follow), photo_interests (the short-video topic mixture), held_out (no live before the cut).
- `user_authors.parquet`: user_id, author_id, plays: a user's short-video plays of each creator in
  the window (the creator-linked route of live sessions goes to these creators' rooms).
- `knowledge.parquet`: entity, topic, kind: the world knowledge that resolves the invented names
  in the texts (a game, a dish, a team, a place, a person) to topics. It exists ONLY here, never in
  the raw files: it is what a large teacher knows and ids and vectors do not.
- `params.json`: the routes' shares, the evening hours, the topic prior, the short-video -> live
  interest matrix (`transfer`), the world's knobs, a format version.

`LiveChoice` is the rule a live session follows: the generator samples rooms from it and the
oracle scores rooms with it, so both use one definition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

LATENT_DIR = "latent"
FORMAT_VERSION = 3
EVENING = (18, 23)  # hours (UTC, the demo users' clock) of prime time, inclusive
BUCKET_MS = 600_000  # the sampler's time index: rooms listed per 10-minute bucket they overlap
LINKED_TOP = 64  # the creators a user's linked route looks at: their most-played who stream


@dataclass(frozen=True)
class LiveRoutes:
    """Shares of the ways a user picks a room among those on air (the rest follows interest).

    - `linked`: a room of a creator whose short videos the user played, in proportion to plays,
      among the user's `LINKED_TOP` most-played creators who are on air then (when none is, the
      request follows interest; `rgcd demo-data` prints the realised share);
    - `popularity`: the platform's popular rooms, whatever their topic (`popularity_evening` more
      in prime time, when feeds push what is trending);
    - `chance`: any room on air, uniformly;
    - interest (the remainder): a topic from the user's live mixture, then a room of it by popularity.
    The last three are why behaviour pairs are often strong and unrelated by content.
    """

    linked: float = 0.25
    popularity: float = 0.10
    popularity_evening: float = 0.10
    chance: float = 0.08


EMPTY_KNOWLEDGE = pl.DataFrame(schema={"entity": pl.String, "topic": pl.Int64, "kind": pl.String})


@dataclass(frozen=True)
class LatentTruth:
    """The generator's latent variables (see the module docstring for the columns)."""

    items: pl.DataFrame
    users: pl.DataFrame
    user_authors: pl.DataFrame
    params: dict
    knowledge: pl.DataFrame = field(default_factory=lambda: EMPTY_KNOWLEDGE)

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
    write_parquet_atomic(truth.knowledge, folder / "knowledge.parquet")
    # params.json last: its presence says the folder is complete (read_latent looks for it)
    write_json_atomic(truth.params, folder / "params.json")
    return folder


def read_latent(folder: Path) -> LatentTruth | None:
    """The truth in `folder` (a `latent/` folder), or None when there is none."""
    folder = Path(folder)
    if not (folder / "params.json").exists():
        return None
    knowledge = folder / "knowledge.parquet"
    return LatentTruth(items=pl.read_parquet(folder / "items.parquet"),
                       users=pl.read_parquet(folder / "users.parquet"),
                       user_authors=pl.read_parquet(folder / "user_authors.parquet"),
                       params=json.loads((folder / "params.json").read_text()),
                       knowledge=pl.read_parquet(knowledge) if knowledge.exists() else EMPTY_KNOWLEDGE)


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


class GroupedSampler:
    """Draws one member of a given group per request, in proportion to member weights.

    Members are sorted by group; each member's key is `group + cumulative share within group`, so a
    draw is one `searchsorted` of `group + U[0,1)` for all requests at once. A request for a group
    with no members lands on the next group's first member (a fallback only tiny worlds hit).
    """

    def __init__(self, group: np.ndarray, weight: np.ndarray) -> None:
        self.order = np.argsort(group, kind="stable")
        g = group[self.order]
        w = weight[self.order].astype(float)
        cum = np.cumsum(w)
        boundaries = np.flatnonzero(np.diff(g)) + 1
        starts = np.concatenate([[0], boundaries])
        ends = np.concatenate([boundaries, [len(g)]])
        before = np.repeat(np.concatenate([[0.0], cum[ends[:-1] - 1]]), ends - starts)
        totals = np.repeat(cum[ends - 1], ends - starts) - before
        within = (cum - before) / totals
        within[ends - 1] = 1.0  # exact upper edge, so a draw never spills into the next group
        self.keys = g + within

    def draw(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        """One member index (into the original arrays) per requested group."""
        pos = np.searchsorted(self.keys, groups + rng.random(len(groups)), side="left")
        return self.order[np.minimum(pos, len(self.order) - 1)]


def _offsets(count: np.ndarray) -> np.ndarray:
    """0, 1, ..., count[i]-1 for each i, concatenated."""
    return np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)


class _Ranges:
    """Contiguous groups of a sorted key array, with a cumulative weight: draws inside a group in
    O(log n), by weight or uniformly."""

    def __init__(self, keys: np.ndarray, weight: np.ndarray) -> None:
        self.keys = keys
        self.cum = np.concatenate([[0.0], np.cumsum(weight, dtype=np.float64)])

    def bounds(self, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.searchsorted(self.keys, group, side="left"),
                np.searchsorted(self.keys, group, side="right"))

    def by_weight(self, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        target = self.cum[lo] + rng.random(len(lo)) * (self.cum[hi] - self.cum[lo])
        pos = np.searchsorted(self.cum, target, side="right") - 1
        return np.clip(pos, lo, np.maximum(hi - 1, lo))

    @staticmethod
    def uniform(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return lo + np.minimum((rng.random(len(lo)) * (hi - lo)).astype(np.int64), np.maximum(hi - lo - 1, 0))


class LiveChoice:
    """P(user enters room r | user, time t), over the rooms on air at t: the generator's rule.

    Arrays are indexed by position: users 0..n_users-1, rooms 0..n_rooms-1 sorted by start,
    creators 0..n_authors-1. `linked_keys` (sorted) are `user * n_authors + author` with
    `linked_plays` the user's plays of that creator. A creator's room "on air" for the linked route
    is their latest room started at or before t, if it has not ended (a streamer is in one room);
    the route looks at the user's `LINKED_TOP` most-played creators who stream (bounded work).

    `sample` draws route by route with O(log n) work per request (a time-bucket index and
    rejection within it), so a world's sessions cost time linear in its users; `probabilities`
    writes the same rule out densely for scoring (the oracle) and for checking the sampler.
    """

    def __init__(self, interest: np.ndarray, room_topic: np.ndarray, room_weight: np.ndarray,
                 room_author: np.ndarray, room_start: np.ndarray, room_end: np.ndarray,
                 linked_keys: np.ndarray, linked_plays: np.ndarray, n_authors: int) -> None:
        if len(room_start) and (np.diff(room_start) < 0).any():
            raise ValueError("LiveChoice needs rooms sorted by start")
        self.interest = np.asarray(interest, dtype=np.float64)
        self.n_topics = self.interest.shape[1]
        self.topic = np.asarray(room_topic, dtype=np.int64)
        self.weight = np.asarray(room_weight, dtype=np.float64)
        self.author = np.asarray(room_author, dtype=np.int64)
        self.start = np.asarray(room_start, dtype=np.int64)
        self.end = np.asarray(room_end, dtype=np.int64)
        self.longest = int((self.end - self.start).max()) if len(self.start) else 0
        self.linked_keys = np.asarray(linked_keys, dtype=np.int64)
        self.linked_plays = np.asarray(linked_plays, dtype=np.float64)
        self.n_authors = n_authors
        n = len(self.start)
        self._index_creators(n)
        self._index_topics(n)
        self._index_buckets()

    # ------------------------------------------------------------------------------------ indexes
    def _index_creators(self, n: int) -> None:
        """Rooms by (creator, start) and the users' plays of creators who stream."""
        self.creator_keys = np.sort(self.author * max(n, 1) + np.arange(n))
        streams = np.zeros(self.n_authors, dtype=bool)
        streams[self.author] = True
        keep = streams[self.linked_keys % self.n_authors] if len(self.linked_keys) else np.zeros(0, bool)
        keys, plays = self.linked_keys[keep], self.linked_plays[keep]
        # each user's LINKED_TOP most-played streaming creators (ties: the lower creator index)
        order = np.lexsort((keys % self.n_authors, -plays, keys // self.n_authors))
        user = keys[order] // self.n_authors
        first = np.searchsorted(user, user, side="left")
        top = np.sort(order[np.arange(len(order)) - first < LINKED_TOP])
        self.stream_keys, self.stream_plays = keys[top], plays[top]
        # a room is its creator's current room at t unless the creator started another by then
        room = self.creator_keys % max(n, 1)
        nxt = np.full(n, np.iinfo(np.int64).max)
        same = self.author[room[1:]] == self.author[room[:-1]]
        nxt[room[:-1][same]] = self.start[room[1:][same]]
        self.next_start = nxt

    def _index_topics(self, n: int) -> None:
        """Per topic, rooms in start order and in end order with cumulative weights: N_k(t), W_k(t)."""
        self.end_sorted = np.sort(self.end)
        end_order = np.argsort(self.end, kind="stable")
        end_rank = np.empty(n, dtype=np.int64)
        end_rank[end_order] = np.arange(n)
        self._span = max(n, 1) + 1
        ks = self.topic * self._span + np.arange(n)
        o = np.argsort(ks, kind="stable")
        self.topic_start_keys = ks[o]
        self.topic_start_cum = np.concatenate([[0.0], np.cumsum(self.weight[o])])
        ke = self.topic * self._span + end_rank
        o = np.argsort(ke, kind="stable")
        self.topic_end_keys = ke[o]
        self.topic_end_cum = np.concatenate([[0.0], np.cumsum(self.weight[o])])
        self.start_cum = np.concatenate([[0.0], np.cumsum(self.weight)])
        self.end_cum = np.concatenate([[0.0], np.cumsum(self.weight[end_order])])

    def _index_buckets(self) -> None:
        """Every room listed in each BUCKET_MS bucket it overlaps, sorted by (bucket, topic)."""
        if len(self.start) == 0:
            self.buckets = _Ranges(np.zeros(0, np.int64), np.zeros(0))
            self.bucket_room = np.zeros(0, np.int64)
            return
        first = self.start // BUCKET_MS
        last = (self.end - 1) // BUCKET_MS
        count = (last - first + 1).astype(np.int64)
        room = np.repeat(np.arange(len(self.start)), count)
        bucket = np.repeat(first, count) + _offsets(count)
        key = bucket * self.n_topics + self.topic[room]
        o = np.argsort(key, kind="stable")
        self.bucket_room = room[o]
        self.buckets = _Ranges(key[o], self.weight[self.bucket_room])

    # ------------------------------------------------------------------------------ on-air figures
    def on_air_totals(self, t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N(t), W(t)): rooms on air at each t and their total weight (start <= t < end)."""
        s = np.searchsorted(self.start, t_ms, side="right")
        e = np.searchsorted(self.end_sorted, t_ms, side="right")
        return s - e, np.maximum(self.start_cum[s] - self.end_cum[e], 0.0)

    def on_air_by_topic(self, t_ms: np.ndarray, topic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N_k(t), W_k(t)) for one topic per request."""
        s = np.searchsorted(self.start, t_ms, side="right")
        e = np.searchsorted(self.end_sorted, t_ms, side="right")
        base = topic * self._span
        s_lo, s_hi = (np.searchsorted(self.topic_start_keys, base, side="left"),
                      np.searchsorted(self.topic_start_keys, base + s, side="left"))
        e_lo, e_hi = (np.searchsorted(self.topic_end_keys, base, side="left"),
                      np.searchsorted(self.topic_end_keys, base + e, side="left"))
        n = (s_hi - s_lo) - (e_hi - e_lo)
        w = (self.topic_start_cum[s_hi] - self.topic_start_cum[s_lo]) - (self.topic_end_cum[e_hi]
                                                                           - self.topic_end_cum[e_lo])
        return n, np.where(n > 0, np.maximum(w, 0.0), 0.0)

    def creator_room_at(self, creator: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """Each creator's room on air at t (their latest room started by t, not ended), else -1."""
        n = max(len(self.start), 1)
        if len(self.start) == 0:
            return np.full(len(creator), -1, dtype=np.int64)
        s = np.searchsorted(self.start, t_ms, side="right")  # rooms 0..s-1 started by t
        pos = np.searchsorted(self.creator_keys, creator * n + s, side="left") - 1
        ok = pos >= 0
        key = self.creator_keys[np.maximum(pos, 0)]
        room = key % n
        ok &= (key // n == creator) & (self.end[room] > t_ms)
        return np.where(ok, room, -1)

    def linked_entries(self, user: np.ndarray, t_ms: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(request row, room, plays) of each request's linked creators on air at t."""
        if len(self.stream_keys) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        lo = np.searchsorted(self.stream_keys, user.astype(np.int64) * self.n_authors)
        hi = np.searchsorted(self.stream_keys, (user.astype(np.int64) + 1) * self.n_authors)
        count = hi - lo
        row = np.repeat(np.arange(len(user)), count)
        entry = np.repeat(lo, count) + _offsets(count)
        room = self.creator_room_at(self.stream_keys[entry] % self.n_authors, np.asarray(t_ms)[row])
        on = room >= 0
        return row[on], room[on], self.stream_plays[entry[on]]

    def linked_on_air(self, user: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """Per request: the user's plays of linked creators on air at t (all rooms, not candidates)."""
        row, _, plays = self.linked_entries(user, t_ms)
        return np.bincount(row, weights=plays, minlength=len(user)).astype(np.float64)

    def _plays(self, user: np.ndarray, author: np.ndarray) -> np.ndarray:
        """plays(u, creator) for (n, m) broadcast user/author index arrays."""
        keys = user.astype(np.int64) * self.n_authors + author
        lk = self.stream_keys
        if len(lk) == 0:
            return np.zeros(keys.shape)
        pos = np.minimum(np.searchsorted(lk, keys), len(lk) - 1)
        return np.where(lk[pos] == keys, self.stream_plays[pos], 0.0)

    def rooms_around(self, t_lo: int, t_hi: int) -> np.ndarray:
        """Rooms on air at some moment of [t_lo, t_hi]."""
        lo = np.searchsorted(self.start, t_lo - self.longest, side="left")
        hi = np.searchsorted(self.start, t_hi, side="right")
        cand = np.arange(lo, hi)
        return cand[self.end[cand] > t_lo]

    # ------------------------------------------------------------------------------------ the rule
    def _shares(self, user: np.ndarray, t_ms: np.ndarray, routes: LiveRoutes):
        """Per request: (share_pop, share_linked_per_play, share_interest) of the rule."""
        share_pop = routes.popularity + routes.popularity_evening * is_evening(t_ms)
        on = self.linked_on_air(user, t_ms)
        share_linked = np.where(on > 0, routes.linked, 0.0)
        per_play = share_linked / np.maximum(on, 1e-300)
        share_interest = 1.0 - share_pop - routes.chance - share_linked
        return share_pop, per_play, share_interest

    def probabilities(self, user: np.ndarray, t_ms: np.ndarray, cand: np.ndarray,
                      routes: LiveRoutes) -> np.ndarray:
        """(len(user), len(cand)) probabilities; 0 off air; a row with no room on air is all 0.

        With on(r) the on-air mask at t, w(r) the room weight, k(r) its topic, c(r) its creator:
        P(r) = on(r) * [s_int(u,t) * theta'(u, k) * w(r) / W_k(t) + s_pop(t) * w(r) / W(t) + s_chance / N(t)]
             + s_link(u,t) * plays(u, c) / L(u, t) * current(r, t),
        theta' the user's live mixture over the topics on air at t, current(r, t) whether r is c's
        room on air at t, L(u, t) the user's plays of their linked creators on air at t (the
        LINKED_TOP most played who stream), s_link = s_linked where L > 0 else 0, and
        s_int = 1 - s_pop - s_chance - s_link.
        Every total is over all rooms on air, so a row does not depend on which candidates are asked.
        """
        t = np.asarray(t_ms, dtype=np.int64)
        user = np.asarray(user, dtype=np.int64)
        cand = np.asarray(cand, dtype=np.int64)
        n_on, w_on = self.on_air_totals(t)
        k = np.arange(self.n_topics)
        n_k, w_k = self.on_air_by_topic(np.repeat(t, self.n_topics), np.tile(k, len(t)))
        n_k, w_k = n_k.reshape(len(t), -1), w_k.reshape(len(t), -1)
        theta = self.interest[user] * (n_k > 0)
        theta /= np.maximum(theta.sum(axis=1, keepdims=True), 1e-300)
        share_pop, per_play, share_interest = self._shares(user, t, routes)
        per_topic = share_interest[:, None] * theta / np.maximum(w_k, 1e-300)  # (n, topics)
        tc = t[:, None]
        on = (self.start[cand][None, :] <= tc) & (tc < self.end[cand][None, :])
        w = self.weight[cand][None, :]
        p = np.take(per_topic, self.topic[cand], axis=1) * w
        p += (share_pop / np.maximum(w_on, 1e-300))[:, None] * w
        p += (routes.chance / np.maximum(n_on, 1))[:, None]
        p *= on
        current = on & (self.next_start[cand][None, :] > tc)
        p += per_play[:, None] * self._plays(user[:, None], self.author[cand][None, :]) * current
        p[n_on == 0] = 0.0
        return p

    def sample(self, rng: np.random.Generator, user: np.ndarray, t_ms: np.ndarray, routes: LiveRoutes,
               chunk: int = 1_000_000, **_ignored) -> np.ndarray:
        """One room per (user, time) request, -1 where nothing is on air; O(log n) per request."""
        out = np.full(len(user), -1, dtype=np.int64)
        for lo in range(0, len(user), chunk):
            sl = slice(lo, lo + chunk)
            out[sl] = self._sample_chunk(rng, np.asarray(user[sl], dtype=np.int64),
                                         np.asarray(t_ms[sl], dtype=np.int64), routes)
        return out

    def _sample_chunk(self, rng, user: np.ndarray, t: np.ndarray, routes: LiveRoutes) -> np.ndarray:
        n = len(user)
        out = np.full(n, -1, dtype=np.int64)
        n_on, _ = self.on_air_totals(t)
        share_pop = routes.popularity + routes.popularity_evening * is_evening(t)
        u = rng.random(n)
        linked = (u < routes.linked) & (n_on > 0)
        pop = (u >= routes.linked) & (u < routes.linked + share_pop) & (n_on > 0)
        chance = (u >= routes.linked + share_pop) & (u < routes.linked + share_pop + routes.chance)
        chance &= n_on > 0
        interest = (n_on > 0) & ~(linked | pop | chance)
        if linked.any():
            rows = np.flatnonzero(linked)
            row, room, plays = self.linked_entries(user[rows], t[rows])
            if len(row):
                has = np.unique(row)
                out[rows[has]] = room[GroupedSampler(row, plays).draw(rng, has)]
            interest[rows[out[rows] < 0]] = True  # none of their creators is live: they browse by interest
        if pop.any():
            out[pop] = self._room_in_bucket(rng, t[pop], None, by_weight=True)
        if chance.any():
            out[chance] = self._room_in_bucket(rng, t[chance], None, by_weight=False)
        if interest.any():
            rows = np.flatnonzero(interest)
            topic = self._topic_on_air(rng, user[rows], t[rows])
            out[rows] = self._room_in_bucket(rng, t[rows], topic, by_weight=True)
        return out

    def _topic_on_air(self, rng, user: np.ndarray, t: np.ndarray, rounds: int = 64) -> np.ndarray:
        """A topic from each user's live mixture, among the topics with a room on air at t
        (rejection: exact, since a rejected topic is redrawn from the same mixture)."""
        grid = GroupedSampler(np.repeat(np.arange(len(user)), self.n_topics),
                              self.interest[user].ravel() + 1e-300)
        topic = np.full(len(user), -1, dtype=np.int64)
        todo = np.arange(len(user))
        for _ in range(rounds):
            if len(todo) == 0:
                return topic
            k = grid.draw(rng, todo) % self.n_topics
            ok = self.on_air_by_topic(t[todo], k)[0] > 0
            topic[todo[ok]] = k[ok]
            todo = todo[~ok]
        # rare: most of the mixture is off air; draw from it restricted to the topics on air
        kk = np.arange(self.n_topics)
        n_k = self.on_air_by_topic(np.repeat(t[todo], self.n_topics), np.tile(kk, len(todo)))[0]
        theta = self.interest[user[todo]] * (n_k.reshape(len(todo), -1) > 0) + 1e-300
        cum = np.cumsum(theta / theta.sum(axis=1, keepdims=True), axis=1)
        topic[todo] = np.minimum((cum < rng.random(len(todo))[:, None]).sum(axis=1), self.n_topics - 1)
        return topic

    def _room_in_bucket(self, rng, t: np.ndarray, topic: np.ndarray | None, by_weight: bool,
                        rounds: int = 64) -> np.ndarray:
        """A room on air at t (of `topic` if given), by weight or uniformly: drawn among the rooms
        listed in t's bucket and redrawn until on air (exact: the bucket holds every room on air)."""
        b = t // BUCKET_MS
        if topic is None:
            lo = np.searchsorted(self.buckets.keys, b * self.n_topics, side="left")
            hi = np.searchsorted(self.buckets.keys, (b + 1) * self.n_topics, side="left")
        else:
            lo, hi = self.buckets.bounds(b * self.n_topics + topic)
        room = np.full(len(t), -1, dtype=np.int64)
        todo = np.flatnonzero(hi > lo)
        for _ in range(rounds):
            if len(todo) == 0:
                return room
            pos = (self.buckets.by_weight(rng, lo[todo], hi[todo]) if by_weight
                   else _Ranges.uniform(rng, lo[todo], hi[todo]))
            r = self.bucket_room[pos]
            ok = (self.start[r] <= t[todo]) & (t[todo] < self.end[r])
            room[todo[ok]] = r[ok]
            todo = todo[~ok]
        for i in todo:  # rare: the bucket's rooms are mostly off air at t; draw exactly
            members = self.bucket_room[lo[i]:hi[i]]
            members = members[(self.start[members] <= t[i]) & (t[i] < self.end[members])]
            if len(members):
                w = self.weight[members] if by_weight else np.ones(len(members))
                room[i] = members[min(int(np.searchsorted(np.cumsum(w) / w.sum(), rng.random())),
                                      len(members) - 1)]
        return room
