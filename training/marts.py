"""The dbt marts read straight from their parquet exports, for stage 2 and evaluation alike."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from rgcd.config import Workspace
from rgcd.errors import RgcdError
from rgcd.training.recommender import ItemCatalog


class MissingMartError(RgcdError):
    """A mart the evaluation reads is not in the workspace."""

    exit_code = 2



# Large marts are scanned lazily with only the rows and columns the protocols use, so the filter
# and the projection run inside the parquet scan (streaming) and the rest never reaches Python.
MART_READS: dict[str, tuple[tuple[str, ...], pl.Expr]] = {
    "user_item_interactions": (("user_id", "item_id", "domain", "event_timestamp", "is_positive"),
                               pl.col("is_positive")),
}



def read_mart(ws: Workspace, name: str) -> pl.DataFrame:
    """One mart from `<ws>/marts/<name>.parquet`, with a message saying how to produce it."""
    path = Path(ws.marts) / f"{name}.parquet"
    if not path.exists():
        raise MissingMartError(f"mart {name} not found at {path}; run `rgcd build` (dbt) first")
    if name in MART_READS:
        columns, keep = MART_READS[name]
        return pl.scan_parquet(path).filter(keep).select(columns).collect(engine="streaming")
    return pl.read_parquet(path)



def interactions_before(interactions: pl.DataFrame, catalog: ItemCatalog, cut: datetime) -> pl.DataFrame:
    """Positive interactions strictly before `cut`, with their collaborative key (rooms -> author)."""
    inter = interactions.filter(pl.col("is_positive") & (pl.col("event_timestamp") < cut))
    keys = catalog.cf_keys(inter["item_id"].to_list())
    return inter.select("user_id", "item_id", "domain", "event_timestamp").with_columns(
        pl.Series("key", keys, dtype=pl.Utf8))
