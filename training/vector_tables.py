"""The tables of vectors stage 2 writes (item_embeddings, user_embeddings), written batch by batch.

A table keeps the newest `transfer.keep_versions` model versions (for rollback). Writing a new
version streams: the new rows go out one batch of `transfer.write_batch_rows` rows at a time
(each batch turned into a List(Float32) column only when written), then the kept older versions
are copied from the old file one record batch at a time. Neither the new vectors as one frame nor
the old file ever sit whole in memory, so the writer's peak does not grow with the catalogue
(tests/training/test_vector_tables.py measures it). The file is written beside its place and
renamed in (rgcd.atomic): a kill leaves the old table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl

from rgcd.atomic import atomic_path

TIMESTAMP = pl.Datetime("us", "UTC")


def vectors_column(x: np.ndarray | None, n: int) -> pl.Series:
    """float32 rows as List(Float32); all null where a space is off (x None)."""
    if x is None:
        return pl.Series([None] * n, dtype=pl.List(pl.Float32))
    return pl.Series(np.ascontiguousarray(x, dtype=np.float32)).cast(pl.List(pl.Float32))


def row_windows(n: int, batch_rows: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive windows of at most `batch_rows` rows over `n` rows."""
    for start in range(0, n, batch_rows):
        yield start, min(n, start + batch_rows)


def kept_versions(path: Path, new_version: str, keep: int) -> list[str]:
    """The newest keep-1 model versions in `path` other than `new_version` (read from two columns)."""
    if not path.exists() or keep <= 1:
        return []
    old = (pl.scan_parquet(path).select("model_version", "created_timestamp")
           .filter(pl.col("model_version") != new_version)
           .group_by("model_version").agg(pl.col("created_timestamp").max())
           .sort("created_timestamp", descending=True).collect())
    return old["model_version"].head(keep - 1).to_list()


def write_versioned_table(path: Path, version: str, keep: int, n_rows: int, batch_rows: int,
                          batch: Callable[[int, int], pl.DataFrame]) -> int:
    """Write `path` as the new version's rows (`batch(start, stop)` for each window of `n_rows`) followed
    by the kept older versions' rows; returns the rows written. See the module docstring."""
    import pyarrow.parquet as pq

    keep_old = kept_versions(path, version, keep)
    written = 0
    with atomic_path(path) as tmp:
        writer: pq.ParquetWriter | None = None
        try:
            for start, stop in row_windows(n_rows, batch_rows):
                table = batch(start, stop).to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
                written += table.num_rows
            if writer is None:  # no new rows: the schema comes from an empty batch
                table = batch(0, 0).to_arrow()
                writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            if keep_old:
                # pre_buffer off: with it, pyarrow reads the whole file's column chunks ahead
                # (+520 MiB for a 960,000-row table, against +0 without)
                old_file = pq.ParquetFile(path, pre_buffer=False)
                for old in old_file.iter_batches(batch_size=batch_rows, use_threads=False):
                    rows = pl.from_arrow(old).filter(pl.col("model_version").is_in(keep_old))
                    if rows.height:
                        writer.write_table(rows.select(writer.schema.names).to_arrow().cast(writer.schema))
                        written += rows.height
        finally:
            if writer is not None:
                writer.close()
    return written
