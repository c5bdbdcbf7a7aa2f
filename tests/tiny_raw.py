"""Rows of the raw KuaiLive-M3 layout for tiny worlds built in tests (ingest, the hostile-data suite)."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl


def plays(day: datetime, users: list[int], photos: list[int]) -> pl.DataFrame:
    """photo_play rows: every user plays every photo, seven minutes apart (ms in the times)."""
    rows = []
    for i, (u, p) in enumerate((u, p) for u in users for p in photos):
        enter = day + timedelta(minutes=7 * i, milliseconds=123)
        rows.append({"user_id": u, "photo_id": p, "author_id": 100 + p % 2, "enter_timestamp": enter,
                     "leave_timestamp": enter + timedelta(seconds=15), "enter_play_type": "feed",
                     "is_complete_play": i % 2, "like_status_type": 0, "is_follow_before_play": 0,
                     "is_follow_after_play": 0})
    return pl.DataFrame(rows)


def sessions(day: datetime, users: list[int]) -> pl.DataFrame:
    """live_interaction rows: one session per user, eleven minutes apart, author 101."""
    rows = []
    for i, u in enumerate(users):
        start = day + timedelta(minutes=11 * i, milliseconds=456)
        rows.append({"user_id": u, "author_id": 101, "live_id": 900 + i % 2,
                     "live_play_start_timestamp": start,
                     "live_play_end_timestamp": start + timedelta(minutes=3),
                     "p_date": start.strftime("%Y%m%d"), "live_source_category": "feed",
                     "enter_live_action": "click", "is_auto_play": 0, "is_follow_enter": 0,
                     "is_follow_leave": 0, "play_duration": 180_000, "like_cnt": 1, "comment_cnt": 0,
                     "send_gift_cnt": 0, "send_gift_num": 0, "follow_author_cnt": 0,
                     "cancel_follow_author_cnt": 0, "share_cnt": 0, "report_live_cnt": 0})
    return pl.DataFrame(rows)


def author_profile() -> pl.DataFrame:
    """Two authors: 100 posts short videos only, 101 also streams."""
    return pl.DataFrame({
        "author_id": [100, 101], "is_photo_author": [1, 1], "is_live_author": [0, 1],
        "gender": ["M", "F"], "age_segment": ["18-23", "24-30"], "fans_user_num": ["[0,10)", "[10,100)"]})


def photo_tag() -> pl.DataFrame:
    """Category paths of photos 10-12."""
    return pl.DataFrame({
        "photo_id": [10, 11, 12], "first_level_category_name": ["game", "food", "game"],
        "second_level_category_name": ["moba", "cook", "fps"], "third_level_category_name": ["", "", ""],
        "fourth_level_category_name": ["", "", ""]})
