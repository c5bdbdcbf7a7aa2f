"""The KuaiLive-M3 data contract: which files exist, their columns, types and keys.

This module is the single place that describes the raw layout. The demo generator writes it,
ingest validates against it, and the lake stores each file's columns under the same names with
normalised types (see `LAKE_TYPES`): integers as int64, texts as utf8, every time as a UTC
timestamp in milliseconds, vectors as list<float32>.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import pyarrow as pa


class Kind(StrEnum):
    """How a column is encoded in the raw files."""

    INT = "int"                  # integer (ids, counters, flags, durations in ms)
    STR = "str"                  # free text; may be empty
    TIMESTAMP = "timestamp"      # parquet timestamp[ms] (epoch-ms integers accepted too)
    DATETIME_STR = "datetime"    # CSV "YYYY-MM-DD HH:MM:SS.mmm", UTC (epoch-ms integers accepted too)
    EPOCH_MS = "epoch_ms"        # integer milliseconds since the epoch, UTC
    DATE_STR = "date"            # yyyyMMdd
    VECTOR = "vector"            # list of float


LAKE_TYPES: dict[Kind, pa.DataType] = {
    Kind.INT: pa.int64(),
    Kind.STR: pa.string(),
    Kind.TIMESTAMP: pa.timestamp("ms", tz="UTC"),
    Kind.DATETIME_STR: pa.timestamp("ms", tz="UTC"),
    Kind.EPOCH_MS: pa.timestamp("ms", tz="UTC"),
    Kind.DATE_STR: pa.string(),
    Kind.VECTOR: pa.list_(pa.float32()),
}

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S%.3f"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = False  # False: a missing value quarantines the row


@dataclass(frozen=True)
class ForeignKey:
    """`column` must name a row of `parent`.`parent_column`."""

    column: str
    parent: str
    parent_column: str


@dataclass(frozen=True)
class RawFile:
    """One file of the KuaiLive-M3 layout."""

    stem: str
    fmt: str  # "csv" or "parquet"
    columns: tuple[Column, ...]
    required: bool = True
    key: tuple[str, ...] = ()  # natural key; re-ingest never duplicates a key
    foreign_keys: tuple[ForeignKey, ...] = ()
    non_negative: tuple[str, ...] = ()  # durations and counts
    interval: tuple[str, str] | None = None  # (start, end): end before start is rejected
    time_column: str | None = None  # the event time that partitions the lake table by day
    extra_optional: tuple[Column, ...] = field(default=())  # kept when present, never required

    @property
    def filename(self) -> str:
        return f"{self.stem}.{self.fmt}"

    def column(self, name: str) -> Column:
        for col in (*self.columns, *self.extra_optional):
            if col.name == name:
                return col
        raise KeyError(name)

    def lake_schema(self, present: set[str] | None = None) -> pa.Schema:
        """The arrow schema this file has in the lake (optional extras only when present)."""
        cols = list(self.columns) + [c for c in self.extra_optional if present and c.name in present]
        return pa.schema([pa.field(c.name, LAKE_TYPES[c.kind], nullable=True) for c in cols])


def _c(name: str, kind: Kind, nullable: bool = False) -> Column:
    return Column(name, kind, nullable)


I, S, T, D = Kind.INT, Kind.STR, Kind.TIMESTAMP, Kind.DATETIME_STR  # noqa: E741 - short names keep the table readable

FILES: tuple[RawFile, ...] = (
    RawFile("user_id_set", "csv", (_c("user_id", I),), key=("user_id",)),
    RawFile(
        "author_profile", "csv",
        (_c("author_id", I), _c("is_photo_author", I), _c("is_live_author", I),
         _c("gender", S, True), _c("age_segment", S, True), _c("fans_user_num", S, True)),
        key=("author_id",),
    ),
    RawFile(
        "photo_meta", "parquet",
        (_c("photo_id", I), _c("author_id", I), _c("duration", I), _c("display_type", I, True),
         _c("cover_title", S, True), _c("video_texts", S, True)),
        key=("photo_id",),
        foreign_keys=(ForeignKey("author_id", "author_profile", "author_id"),),
        non_negative=("duration",),
        extra_optional=(_c("cover_path", S, True),),
    ),
    RawFile(
        "photo_tag", "csv",
        (_c("photo_id", I), _c("first_level_category_name", S, True),
         _c("second_level_category_name", S, True), _c("third_level_category_name", S, True),
         _c("fourth_level_category_name", S, True)),
        key=("photo_id",),
        foreign_keys=(ForeignKey("photo_id", "photo_meta", "photo_id"),),
    ),
    RawFile(
        "live_room_meta", "parquet",
        (_c("live_id", I), _c("author_id", I), _c("live_name", S, True), _c("start_timestamp", T),
         _c("end_timestamp", T, True), _c("live_duration", I, True)),
        key=("live_id",),
        foreign_keys=(ForeignKey("author_id", "author_profile", "author_id"),),
        non_negative=("live_duration",),
        interval=("start_timestamp", "end_timestamp"),
        extra_optional=(_c("cover_path", S, True),),
    ),
    RawFile(
        "photo_play", "parquet",
        (_c("user_id", I), _c("photo_id", I), _c("author_id", I), _c("enter_timestamp", T),
         _c("leave_timestamp", T), _c("enter_play_type", S, True), _c("is_complete_play", I),
         _c("like_status_type", I), _c("is_follow_before_play", I), _c("is_follow_after_play", I)),
        key=("user_id", "photo_id", "enter_timestamp"),
        foreign_keys=(ForeignKey("user_id", "user_id_set", "user_id"),
                      ForeignKey("photo_id", "photo_meta", "photo_id"),
                      ForeignKey("author_id", "author_profile", "author_id")),
        interval=("enter_timestamp", "leave_timestamp"),
        time_column="enter_timestamp",
    ),
    RawFile(
        "live_interaction", "csv",
        (_c("user_id", I), _c("author_id", I), _c("live_id", I), _c("live_play_start_timestamp", D),
         _c("live_play_end_timestamp", D), _c("p_date", Kind.DATE_STR, True),
         _c("live_source_category", S, True), _c("enter_live_action", S, True), _c("is_auto_play", I),
         _c("is_follow_enter", I), _c("is_follow_leave", I), _c("play_duration", I),
         _c("like_cnt", I), _c("comment_cnt", I), _c("send_gift_cnt", I), _c("send_gift_num", I),
         _c("follow_author_cnt", I), _c("cancel_follow_author_cnt", I), _c("share_cnt", I),
         _c("report_live_cnt", I)),
        key=("user_id", "live_id", "live_play_start_timestamp"),
        foreign_keys=(ForeignKey("user_id", "user_id_set", "user_id"),
                      ForeignKey("live_id", "live_room_meta", "live_id"),
                      ForeignKey("author_id", "author_profile", "author_id")),
        non_negative=("play_duration", "like_cnt", "comment_cnt", "send_gift_cnt", "send_gift_num",
                      "follow_author_cnt", "cancel_follow_author_cnt", "share_cnt", "report_live_cnt"),
        interval=("live_play_start_timestamp", "live_play_end_timestamp"),
        time_column="live_play_start_timestamp",
    ),
    RawFile(
        "photo_emb_128", "parquet", (_c("photo_id", I), _c("feature", Kind.VECTOR)),
        required=False, key=("photo_id",),
        foreign_keys=(ForeignKey("photo_id", "photo_meta", "photo_id"),),
    ),
    RawFile(
        "live_emb_64", "parquet", (_c("live_id", I), _c("embedding", Kind.VECTOR)),
        required=False, key=("live_id",),
        foreign_keys=(ForeignKey("live_id", "live_room_meta", "live_id"),),
    ),
    RawFile(
        "live_comment", "csv",
        (_c("live_stream_id", I), _c("user_id", I), _c("author_id", I), _c("content", S, True),
         _c("comment_ts", Kind.EPOCH_MS)),
        required=False, key=("live_stream_id", "user_id", "comment_ts"),
        foreign_keys=(ForeignKey("live_stream_id", "live_room_meta", "live_id"),
                      ForeignKey("user_id", "user_id_set", "user_id"),
                      ForeignKey("author_id", "author_profile", "author_id")),
        time_column="comment_ts",
    ),
    RawFile(
        "live_show", "parquet",
        (_c("live_id", I), _c("user_id", I), _c("author_id", I), _c("show_timestamp", T)),
        required=False, key=("live_id", "user_id", "show_timestamp"),
        foreign_keys=(ForeignKey("live_id", "live_room_meta", "live_id"),
                      ForeignKey("user_id", "user_id_set", "user_id"),
                      ForeignKey("author_id", "author_profile", "author_id")),
        time_column="show_timestamp",
    ),
)

BY_STEM: dict[str, RawFile] = {f.stem: f for f in FILES}

VECTOR_DIMS: dict[str, int] = {"photo_emb_128": 128, "live_emb_64": 64}


def ingest_order() -> list[RawFile]:
    """Files in an order where every parent is ingested before its children."""
    done: list[RawFile] = []
    pending = list(FILES)
    while pending:
        for f in pending:
            if all(fk.parent in {d.stem for d in done} or fk.parent == f.stem for fk in f.foreign_keys):
                done.append(f)
                pending.remove(f)
                break
        else:  # pragma: no cover - the table above is acyclic
            raise RuntimeError("cycle in the data contract's foreign keys")
    return done
