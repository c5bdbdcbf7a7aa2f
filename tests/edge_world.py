"""A KuaiLive-M3-layout world with the contract's legal edge cases that the demo generator never
makes, built in code on top of a small demo world:

- streamers who post no short videos (is_photo_author = 0), with rooms and viewers;
- rooms with empty names; short videos with no tags, and tags that stop at level 3;
- users with plays and no live sessions, and users with live sessions and no plays;
- optional files absent (live_comment, live_emb_64); extra columns and extra files present
  (the real dataset has more files than the contract names);
- ids near the int64 limit (a user, a streamer, a room).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl

from rgcd.transforms.demo import generate
from rgcd.transforms.raw_io import write_raw

BIG = 2**63 - 1  # the largest int64
BIG_USER, LIVE_ONLY_USER = BIG, BIG - 1
BIG_STREAMER, SMALL_STREAMER = BIG - 2, 9_000_001
BIG_ROOM = BIG - 3


def _csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)  # every column as text: written back unchanged


def write_edge_world(out: Path, users: int = 300, days: int = 6, seed: int = 5) -> Path:
    """Write the edge-case world to `out` (a demo world, then the edge cases above)."""
    generate(out, users=users, days=days, seed=seed, show_progress=False)
    rooms = pl.read_parquet(out / "live_room_meta.parquet")
    plays = pl.read_parquet(out / "photo_play.parquet")
    sessions = _csv(out / "live_interaction.csv")
    start = rooms["start_timestamp"].min() + timedelta(hours=20)

    # Users: one with plays only (a copy of an existing user's plays), one with sessions only.
    user_ids = _csv(out / "user_id_set.csv")
    write_raw(out, "user_id_set", pl.concat([user_ids, pl.DataFrame({"user_id": [str(BIG_USER),
                                                                                 str(LIVE_ONLY_USER)]})]))
    first_user = plays["user_id"][0]
    copied = plays.filter(pl.col("user_id") == first_user).with_columns(pl.lit(BIG_USER).alias("user_id"))
    write_raw(out, "photo_play", pl.concat([plays, copied]))

    # Streamers with no short videos, two rooms each, one with an empty name.
    authors = _csv(out / "author_profile.csv")
    streamers = pl.DataFrame({
        "author_id": [str(BIG_STREAMER), str(SMALL_STREAMER)], "is_photo_author": ["0", "0"],
        "is_live_author": ["1", "1"], "gender": ["F", "U"], "age_segment": ["24-30", ""],
        "fans_user_num": ["[0,10)", "[10,100)"]})
    write_raw(out, "author_profile", pl.concat([authors, streamers]))
    new_rooms = pl.DataFrame({
        "live_id": [BIG_ROOM, 9_000_101, 9_000_102, 9_000_103],
        "author_id": [BIG_STREAMER, BIG_STREAMER, SMALL_STREAMER, SMALL_STREAMER],
        "live_name": ["", "late night chat", "", "morning show"],
        "start_timestamp": [start, start + timedelta(days=1), start, start + timedelta(days=2)],
        "end_timestamp": [start + timedelta(hours=2), start + timedelta(days=1, hours=3),
                          start + timedelta(hours=1), start + timedelta(days=2, hours=1)],
    }).with_columns((pl.col("end_timestamp") - pl.col("start_timestamp")).dt.total_milliseconds()
                    .alias("live_duration"))
    write_raw(out, "live_room_meta", pl.concat([rooms, new_rooms.cast(rooms.schema)]))
    viewers = user_ids["user_id"].head(40).to_list() + [str(LIVE_ONLY_USER)]
    template = sessions.row(0, named=True)
    extra = []
    for i, user in enumerate(viewers):
        room = new_rooms.row(i % new_rooms.height, named=True)
        begin = room["start_timestamp"] + timedelta(minutes=i % 50)
        end = begin + timedelta(minutes=5)
        extra.append({**template, "user_id": user, "author_id": str(room["author_id"]),
                      "live_id": str(room["live_id"]),
                      "live_play_start_timestamp": begin.strftime("%Y-%m-%d %H:%M:%S.000"),
                      "live_play_end_timestamp": end.strftime("%Y-%m-%d %H:%M:%S.000"),
                      "p_date": begin.strftime("%Y%m%d"), "play_duration": "300000"})
    sessions = pl.concat([sessions, pl.DataFrame(extra)])
    # An extra column the contract does not name, in a CSV and in a parquet file.
    sessions.with_columns(pl.lit("x").alias("shadow_column")).write_csv(out / "live_interaction.csv")
    meta = pl.read_parquet(out / "photo_meta.parquet")
    meta.with_columns(pl.lit(7).alias("upload_region")).write_parquet(out / "photo_meta.parquet")

    # Tags: a tenth of the photos have none, another tenth stop at level 3.
    tags = _csv(out / "photo_tag.csv").with_row_index("__i")
    tags = tags.filter(pl.col("__i") % 10 != 0).with_columns(
        pl.when(pl.col("__i") % 10 == 1).then(pl.lit("")).otherwise(pl.col("fourth_level_category_name"))
        .alias("fourth_level_category_name")).drop("__i")
    tags.write_csv(out / "photo_tag.csv")

    # Optional files absent; files the contract does not know present.
    (out / "live_comment.csv").unlink()
    (out / "live_emb_64.parquet").unlink()
    pl.DataFrame({"user_id": [1], "device": ["phone"]}).write_csv(out / "user_device.csv")
    (out / "README.txt").write_text("files of the export that rgcd does not read\n")
    return out
