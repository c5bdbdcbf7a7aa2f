"""A synthetic world written directly as the evaluation marts (test fixture, not the demo data).

Users have one main topic; photos and live rooms carry their author's topic in their titles and
multimodal vectors; users watch their topic more often than chance, in both domains; a share of
users has no live history before the cut (cold start). Small enough for tests; `users=20_000`
gives a demo-sized world for timing the evaluation while the real marts are built elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

TOPICS = [
    "cooking food recipe kitchen noodles", "football soccer goal match league",
    "gaming esports player level boss", "music song singer guitar concert",
    "makeup beauty skincare fashion style", "pets dog cat puppy kitten",
    "travel city mountain beach hotel", "fitness workout gym training run",
]
START = datetime(2025, 5, 1, tzinfo=UTC)


def _title(rng: np.random.Generator, topic: int) -> str:
    words = TOPICS[topic].split()
    return " ".join(rng.choice(words, size=3, replace=True))


def build_marts(out: Path, users: int = 300, days: int = 6, test_days: int = 2, authors: int = 40,
                photos: int = 400, photo_plays: int = 30, live_entries: int = 10,
                cold_share: float = 0.2, seed: int = 0, own_topic_share: float = 0.5,
                live_topic_weight: float = 5.0) -> Path:
    """Write item_content, live_schedule, user_item_interactions, eval_klm3_cdr, eval_live_room.

    `own_topic_share` of a user's short-video plays are of their topic (the rest at random);
    a room of their topic is `live_topic_weight` times as likely to be entered as another on air.
    """
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    n_topics = len(TOPICS)
    cut = START + timedelta(days=days - test_days)
    c128 = rng.normal(size=(n_topics, 128)).astype(np.float32)
    c64 = rng.normal(size=(n_topics, 64)).astype(np.float32)

    author_topic = rng.integers(n_topics, size=authors)
    author_pop = rng.zipf(1.6, size=authors).clip(max=50).astype(float)
    live_authors = np.arange(0, authors, 2)  # every other author also streams
    photo_author = rng.integers(authors, size=photos)
    photo_topic = author_topic[photo_author]

    # Live rooms: each live author streams about once a day for 1-4 hours.
    rooms = []
    for a in live_authors:
        for d in range(days):
            if rng.random() < 0.85:
                s = START + timedelta(days=d, hours=float(rng.uniform(0, 20)))
                rooms.append((a, s, s + timedelta(hours=float(rng.uniform(1, 4)))))
    n_rooms = len(rooms)
    room_author = np.array([r[0] for r in rooms])
    # numpy datetimes are naive: these are UTC wall times.
    room_start = np.array([r[1].replace(tzinfo=None) for r in rooms], dtype="datetime64[ms]")
    room_end = np.array([r[2].replace(tzinfo=None) for r in rooms], dtype="datetime64[ms]")
    room_topic = author_topic[room_author]

    ts = pl.Datetime("ms", "UTC")
    item_content = pl.concat([
        pl.DataFrame({
            "item_id": [f"photo:{p}" for p in range(photos)], "domain": "photo",
            "source_id": np.arange(photos), "author_id": photo_author,
            "title": [_title(rng, t) for t in photo_topic], "body_text": "",
            "category_l1": [TOPICS[t].split()[0] for t in photo_topic],
            "mm_embedding": list(c128[photo_topic] + rng.normal(size=(photos, 128)).astype(np.float32)),
            "start_timestamp": None, "end_timestamp": None,
        }, schema_overrides={"start_timestamp": ts, "end_timestamp": ts,
                             "mm_embedding": pl.List(pl.Float32)}),
        pl.DataFrame({
            "item_id": [f"live:{r}" for r in range(n_rooms)], "domain": "live",
            "source_id": np.arange(n_rooms), "author_id": room_author,
            "title": [_title(rng, t) for t in room_topic], "body_text": "",
            "category_l1": [TOPICS[t].split()[0] for t in room_topic],
            "mm_embedding": list(c64[room_topic] + rng.normal(size=(n_rooms, 64)).astype(np.float32)),
            "start_timestamp": room_start, "end_timestamp": room_end,
        }, schema_overrides={"start_timestamp": ts, "end_timestamp": ts,
                             "mm_embedding": pl.List(pl.Float32)}),
    ])
    item_content.write_parquet(out / "item_content.parquet")
    pl.DataFrame({"item_id": [f"live:{r}" for r in range(n_rooms)], "live_id": np.arange(n_rooms),
                  "author_id": room_author, "start_timestamp": room_start, "end_timestamp": room_end},
                 schema_overrides={"start_timestamp": ts, "end_timestamp": ts}
                 ).write_parquet(out / "live_schedule.parquet")

    user_topic = rng.integers(n_topics, size=users)
    cold = rng.random(users) < cold_share
    span_ms = days * 86_400_000
    start_ms = int(START.timestamp() * 1000)
    cut_ms = int(cut.timestamp() * 1000)

    # Short-video plays: `own_topic_share` from the user's own topic, the rest from anywhere.
    n_pp = users * photo_plays
    pu = np.repeat(np.arange(users), photo_plays)
    by_topic = [np.flatnonzero(photo_topic == t) for t in range(n_topics)]
    by_topic = [b if len(b) else np.arange(photos) for b in by_topic]
    sizes = np.array([len(b) for b in by_topic])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate(by_topic)
    own = flat[offsets[user_topic[pu]] + (rng.random(n_pp) * sizes[user_topic[pu]]).astype(np.int64)]
    pp = np.where(rng.random(n_pp) < own_topic_share, own, rng.integers(photos, size=n_pp))
    pt = start_ms + rng.integers(span_ms, size=n_pp)
    positive = rng.random(n_pp) < 0.8

    # Live entries: a moment, then one of the rooms on air, own topic favoured, popular authors more.
    n_le = users * live_entries
    lu = np.repeat(np.arange(users), live_entries)
    lt = np.where(cold[lu], cut_ms + rng.integers(span_ms - (cut_ms - start_ms), size=n_le),
                  start_ms + rng.integers(span_ms, size=n_le))
    rs = room_start.astype(np.int64)
    re = room_end.astype(np.int64)
    chosen = np.full(n_le, -1)
    for lo in range(0, n_le, 2000):
        sl = slice(lo, min(lo + 2000, n_le))
        on = (rs[None, :] <= lt[sl, None]) & (lt[sl, None] < re[None, :])
        w = (np.where(room_topic[None, :] == user_topic[lu[sl], None], live_topic_weight, 1.0)
             * author_pop[room_author][None, :])
        logw = np.where(on, np.log(w), -np.inf)
        pick = _gumbel_pick(rng, logw)
        chosen[sl] = np.where(on.any(axis=1), pick, -1)
    keep = chosen >= 0
    lu, lt, chosen = lu[keep], lt[keep], chosen[keep]

    inter = pl.concat([
        pl.DataFrame({"user_id": pu, "item_id": [f"photo:{p}" for p in pp], "domain": "photo",
                      "author_id": photo_author[pp], "event_ms": pt, "is_positive": positive,
                      "strength": positive.astype(float)}),
        pl.DataFrame({"user_id": lu, "item_id": [f"live:{r}" for r in chosen], "domain": "live",
                      "author_id": room_author[chosen], "event_ms": lt, "is_positive": True,
                      "strength": 1.0}),
    ]).with_columns(pl.from_epoch("event_ms", "ms").dt.replace_time_zone("UTC")
                    .alias("event_timestamp"),
                    pl.col("user_id").cast(pl.Int64), pl.col("author_id").cast(pl.Int64)).drop("event_ms")
    inter.write_parquet(out / "user_item_interactions.parquet")

    live = inter.filter(pl.col("domain") == "live")
    before = live.filter(pl.col("event_timestamp") < cut)
    pop = before.group_by("author_id").len().sort("len", descending=True)
    head = set(pop.head(max(1, len(live_authors) // 5))["author_id"].to_list())
    has_live = set(before["user_id"].to_list())
    live.select(
        "user_id", pl.col("item_id").str.strip_prefix("live:").cast(pl.Int64).alias("live_id"), "item_id",
        pl.col("event_timestamp").alias("request_timestamp"),
        pl.when(pl.col("event_timestamp") < cut).then(pl.lit("train")).otherwise(pl.lit("test"))
        .alias("split"),
        (~pl.col("user_id").is_in(list(has_live))).alias("is_cold_start_user"),
        (~pl.col("author_id").is_in(list(head))).alias("is_tail_item"),
        "author_id",
    ).pipe(_slice_flags, inter, before, [TOPICS[t].split()[0] for t in author_topic]
           ).write_parquet(out / "eval_live_room.parquet")

    # klm3-cdr: positives, photo -> photo_id, live -> author_id, per user and domain 80/10/10.
    pos = inter.filter(pl.col("is_positive")).with_columns(
        pl.when(pl.col("domain") == "photo").then(pl.col("item_id").str.strip_prefix("photo:").cast(pl.Int64))
        .otherwise(pl.col("author_id")).alias("item_id"))
    # The last tenth (at least one row) is test, the tenth before it valid.
    tenth = (pl.len().over("user_id", "domain") // 10).clip(lower_bound=1)
    back = pl.len().over("user_id", "domain") - pl.int_range(pl.len()).over("user_id", "domain")
    pos = pos.sort("user_id", "domain", "event_timestamp").with_columns(back.alias("back"), tenth.alias("t"))
    pos.select("user_id", "domain", "item_id", "event_timestamp",
               pl.when(pl.col("back") <= pl.col("t")).then(pl.lit("test"))
               .when(pl.col("back") <= 2 * pl.col("t")).then(pl.lit("valid")).otherwise(pl.lit("train"))
               .alias("split")).write_parquet(out / "eval_klm3_cdr.parquet")
    return out


def _gumbel_pick(rng: np.random.Generator, logw: np.ndarray) -> np.ndarray:
    """One index per row drawn with probability proportional to exp(logw) (Gumbel-max)."""
    return np.argmax(logw + rng.gumbel(size=logw.shape), axis=1)


def _slice_flags(rows: pl.DataFrame, inter: pl.DataFrame, live_before_cut: pl.DataFrame,
                 author_topic: list[str]) -> pl.DataFrame:
    """The mart's slice flags, computed as dbt/models/marts/eval_live_room.sql defines them:
    is_not_linked (no positive play of the room's author before the request), is_new_streamer (the
    author has no live session before the cut), is_off_topic (the author's topic is none of the
    user's most played categories before the request; false without a play before it)."""
    topic = pl.DataFrame({"author_id": np.arange(len(author_topic)), "topic": author_topic},
                         schema_overrides={"author_id": pl.Int64})
    plays = (inter.filter((pl.col("domain") == "photo") & pl.col("is_positive"))
             .join(topic, on="author_id").select("user_id", pl.col("author_id").alias("play_author"),
                                                 pl.col("topic").alias("play_topic"), "event_timestamp"))
    keyed = rows.with_row_index("row")
    before = keyed.join(plays, on="user_id").filter(pl.col("event_timestamp") < pl.col("request_timestamp"))
    linked = before.filter(pl.col("play_author") == pl.col("author_id")).select("row").unique()
    counts = before.group_by("row", "play_topic").len()
    dominant = counts.filter(pl.col("len") == pl.col("len").max().over("row"))
    on_topic = (keyed.join(topic, on="author_id").join(dominant, left_on=["row", "topic"],
                                                       right_on=["row", "play_topic"]).select("row"))
    return keyed.with_columns(
        ~pl.col("row").is_in(linked["row"].implode()).alias("is_not_linked"),
        ~pl.col("author_id").is_in(live_before_cut["author_id"].unique().implode()).alias("is_new_streamer"),
        (pl.col("row").is_in(counts["row"].unique().implode())
         & ~pl.col("row").is_in(on_topic["row"].implode())).alias("is_off_topic"),
    ).drop("row", "author_id")
