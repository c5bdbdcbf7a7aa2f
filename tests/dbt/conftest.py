"""A tiny lake built in code, in the exact lake layout of the BRIEF (what transforms/ingest.py writes).

The world: 40 users, 20 authors (15 of them go live once a day), 60 short videos over five
categories. Users 0-4 watch no live before the last day (cold start). Sizes are chosen so the
klm3-cdr 10-core keeps users and items in both domains.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rgcd.transforms.contract import BY_STEM

START = date(2026, 3, 1)
N_USERS, N_AUTHORS, N_LIVE_AUTHORS, N_PHOTOS = 40, 20, 15, 60
CATEGORIES = ["food", "games", "music", "sports", "travel"]


def _write(lake: Path, stem: str, rows: dict[str, list], day: date | None = None) -> None:
    schema = BY_STEM[stem].lake_schema(set(rows))  # optional columns (cover_path) where given
    table = pa.table({f.name: pa.array(rows[f.name], type=f.type) for f in schema}, schema=schema)
    folder = lake / stem / (f"event_date={day.isoformat()}" if day else "")
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-0.parquet")


def _ts(day: date, seconds: float) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=float(seconds))


def cover_of(source_id: int) -> str | None:
    """The tiny world's cover_path for a photo or room id: a path, a blank or none (kinds by id)."""
    return {0: f"/covers/{source_id}.png", 1: f"  covers/{source_id}.jpg ", 2: "   "}.get(source_id % 4)


def write_tiny_lake(lake: Path, n_days: int, seed: int = 3, embeddings: bool = True,
                    covers: bool = False) -> list[date]:
    """Write a tiny world's lake covering the first `n_days` days; the same seed gives the same
    rows for a day whatever `n_days` is, so writing more days later extends the lake.

    `covers`: photo_meta and live_room_meta carry the optional cover_path column (`cover_of`)."""
    rng = np.random.default_rng(seed)
    days = [START + timedelta(days=i) for i in range(n_days)]
    _write(lake, "user_id_set", {"user_id": list(range(N_USERS))})
    _write(lake, "author_profile", {
        "author_id": list(range(100, 100 + N_AUTHORS)),
        "is_photo_author": [1] * N_AUTHORS,
        "is_live_author": [1 if a < N_LIVE_AUTHORS else 0 for a in range(N_AUTHORS)],
        "gender": ["U"] * N_AUTHORS, "age_segment": ["18-23"] * N_AUTHORS,
        "fans_user_num": ["1k-10k"] * N_AUTHORS,
    })
    photo_author = [100 + (p % N_AUTHORS) for p in range(N_PHOTOS)]
    photo_duration = rng.integers(5_000, 60_000, N_PHOTOS)
    _write(lake, "photo_meta", {
        "photo_id": list(range(1000, 1000 + N_PHOTOS)), "author_id": photo_author,
        "duration": [int(d) for d in photo_duration], "display_type": [0] * N_PHOTOS,
        "cover_title": [f"video {p}" for p in range(N_PHOTOS)],
        "video_texts": [f"subtitles of video {p}" for p in range(N_PHOTOS)],
        **({"cover_path": [cover_of(1000 + p) for p in range(N_PHOTOS)]} if covers else {}),
    })
    photo_cat = [CATEGORIES[(p // N_AUTHORS + p) % len(CATEGORIES)] for p in range(N_PHOTOS)]
    _write(lake, "photo_tag", {
        "photo_id": list(range(1000, 1000 + N_PHOTOS)),
        "first_level_category_name": photo_cat,
        "second_level_category_name": [c + "/2" for c in photo_cat],
        "third_level_category_name": [c + "/3" for c in photo_cat],
        "fourth_level_category_name": [""] * N_PHOTOS,
    })
    if embeddings:
        _write(lake, "photo_emb_128", {
            "photo_id": list(range(1000, 1000 + N_PHOTOS)),
            "feature": [rng.standard_normal(128).astype(np.float32).tolist() for _ in range(N_PHOTOS)],
        })
    # one room per live author per day, 10:00-16:00 UTC; the last day's rooms of odd authors are on air
    rooms: dict[str, list] = {k: [] for k in ("live_id", "author_id", "live_name", "start_timestamp",
                                              "end_timestamp", "live_duration")}
    for d_i, day in enumerate(days):
        for a in range(N_LIVE_AUTHORS):
            on_air = d_i == len(days) - 1 and a % 2 == 1
            rooms["live_id"].append(5000 + d_i * 100 + a)
            rooms["author_id"].append(100 + a)
            rooms["live_name"].append(f"room of {100 + a}" if a % 4 else "")
            rooms["start_timestamp"].append(_ts(day, 10 * 3600))
            rooms["end_timestamp"].append(None if on_air else _ts(day, 16 * 3600))
            rooms["live_duration"].append(None if on_air else 6 * 3600 * 1000)
    if covers:
        rooms["cover_path"] = [cover_of(r) for r in rooms["live_id"]]
    _write(lake, "live_room_meta", rooms)
    if embeddings:
        _write(lake, "live_emb_64", {
            "live_id": rooms["live_id"],
            "embedding": [rng.standard_normal(64).astype(np.float32).tolist() for _ in rooms["live_id"]],
        })
    for d_i, day in enumerate(days):
        day_rng = np.random.default_rng(seed * 1000 + d_i)  # a day's rows do not depend on n_days
        plays: dict[str, list] = {f.name: [] for f in BY_STEM["photo_play"].lake_schema()}
        for u in range(N_USERS):
            favourites = [(u * 7 + j) % N_PHOTOS for j in range(25)]
            for _ in range(12):
                p = favourites[int(day_rng.integers(0, len(favourites)))]
                enter = _ts(day, day_rng.uniform(0, 86_000))
                progress = day_rng.choice([0.05, 0.3, 0.7, 1.0])
                plays["user_id"].append(u)
                plays["photo_id"].append(1000 + p)
                plays["author_id"].append(photo_author[p])
                plays["enter_timestamp"].append(enter)
                played_ms = float(progress * photo_duration[p])
                plays["leave_timestamp"].append(enter + timedelta(milliseconds=played_ms))
                plays["enter_play_type"].append("feed")
                plays["is_complete_play"].append(int(progress == 1.0))
                plays["like_status_type"].append(int(day_rng.random() < 0.2))
                plays["is_follow_before_play"].append(0)
                plays["is_follow_after_play"].append(int(day_rng.random() < 0.05))
        _write(lake, "photo_play", plays, day)
        sessions: dict[str, list] = {f.name: [] for f in BY_STEM["live_interaction"].lake_schema()}
        for u in range(N_USERS):
            if u < 5 and d_i < len(days) - 1:
                continue  # cold-start users: live only on the last day
            for _ in range(4):
                a = int(day_rng.integers(0, N_LIVE_AUTHORS))
                start = _ts(day, 10 * 3600 + day_rng.uniform(0, 5 * 3600))
                watch = int(day_rng.integers(10_000, 600_000))
                sessions["user_id"].append(u)
                sessions["author_id"].append(100 + a)
                sessions["live_id"].append(5000 + d_i * 100 + a)
                sessions["live_play_start_timestamp"].append(start)
                sessions["live_play_end_timestamp"].append(start + timedelta(milliseconds=watch))
                sessions["p_date"].append(day.strftime("%Y%m%d"))
                sessions["live_source_category"].append("feed")
                sessions["enter_live_action"].append("click")
                for col in ("is_auto_play", "is_follow_enter", "is_follow_leave", "like_cnt", "share_cnt",
                            "report_live_cnt", "cancel_follow_author_cnt"):
                    sessions[col].append(0)
                sessions["play_duration"].append(watch)
                sessions["comment_cnt"].append(int(day_rng.integers(0, 3)))
                gifts = int(day_rng.random() < 0.1)
                sessions["send_gift_cnt"].append(gifts)
                sessions["send_gift_num"].append(gifts * 3)
                sessions["follow_author_cnt"].append(int(day_rng.random() < 0.05))
        _write(lake, "live_interaction", sessions, day)
    return days


@pytest.fixture
def tiny_lake():
    """The tiny-lake writer: tiny_lake(lake_folder, n_days, seed=3, embeddings=True)."""
    return write_tiny_lake


@pytest.fixture
def tiny_cover_of():
    """The tiny world's cover_path for an id, as written with covers=True."""
    return cover_of
