"""The seam between stage 1 and the data below it: behaviour pairs and item content.

Today these are read from the dbt marts' parquet (`<ws>/marts/*.parquet`); this module is the one
place that knows, so switching to a Feast read changes nothing downstream.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from rgcd.config import Workspace

PAIR_COLUMNS = (
    "pair_id",
    "pair_type",
    "photo_item_id",
    "target_id",
    "photo_id",
    "live_id",
    "author_id",
    "co_count",
    "distinct_users",
    "strength",
    "first_seen",
    "last_seen",
    "event_timestamp",
)
ITEM_COLUMNS = (
    "item_id",
    "domain",
    "source_id",
    "author_id",
    "title",
    "body_text",
    "category_l1",
    "category_l2",
    "category_l3",
    "category_l4",
    "mm_embedding",
    "event_timestamp",
)


class MissingInput(FileNotFoundError):
    """A table stage 1 needs is not there; the message says which command writes it."""


@dataclass(frozen=True)
class Stage1Frames:
    """What stage 1 reads: behaviour pairs and item content (both domains)."""

    pairs: pl.DataFrame
    items: pl.DataFrame


def _read_mart(ws: Workspace, name: str, columns: tuple[str, ...]) -> pl.DataFrame:
    path = ws.marts / f"{name}.parquet"
    if not path.exists():
        raise MissingInput(f"{path} is missing: run `rgcd build` (dbt) first; stage 1 reads the {name} mart")
    frame = pl.read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingInput(
            f"{path} has no column(s) {', '.join(missing)} (see the marts contract in the "
            "README); rebuild the marts with `rgcd build`"
        )
    return frame


def read_item_content(ws: Workspace) -> pl.DataFrame:
    """Item content for both domains (one row per item_id, latest version if a mart keeps several)."""
    items = _read_mart(ws, "item_content", ITEM_COLUMNS)
    order = "created_timestamp" if "created_timestamp" in items.columns else "event_timestamp"
    return items.sort(order).unique("item_id", keep="last", maintain_order=True).sort("item_id")


def read_stage1_frames(ws: Workspace) -> Stage1Frames:
    """Behaviour pairs and item content, as stage 1 needs them."""
    return Stage1Frames(pairs=_read_mart(ws, "behaviour_pairs", PAIR_COLUMNS), items=read_item_content(ws))
