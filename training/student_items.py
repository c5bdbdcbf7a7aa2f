"""What the student (`rgcd distill`) reads of every item, read through Feast in windows and kept on disk.

The catalogue's content (titles, texts, categories, a 128-float vector per item: ~1 KB an item,
13 GB at KuaiLive-M3's 13.3M items) never sits whole in memory: `StudentItems.read` asks Feast
for `student.read_batch_items` ids at a time (`rgcd.training.frames.read_items_in_windows`) in
the order the student encodes them (the items that appeared before the cut first, by id; then
the later ones, by id), appends each window to a parquet file in the student's folder and folds it
into the items' digest. Encoding then reads that file one shard at a time (`slice`). What stays in
memory for the whole catalogue is the item ids and domains (the chorus index is made of them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from rgcd.config import Settings, Workspace

# The columns the student reads of an item (its text and its multimodal vector), in order.
ITEM_COLUMNS = ["item_id", "domain", "title", "body_text", "category_l1", "category_l2", "category_l3",
                "category_l4", "mm_embedding"]
# item_id sorts the file's rows; these two are kept for the index and the topic probe
KEPT = [*ITEM_COLUMNS, "first_appearance"]


class ItemsDigest:
    """A digest of what the student reads of items, in order (ids and content), fed frame by frame:
    the same digest however the items are cut into frames."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, items: pl.DataFrame) -> ItemsDigest:
        # Ids alone are not enough: a restated title or a vector file added later keeps the ids.
        self._h.update(items.select(ITEM_COLUMNS).hash_rows(seed=0).to_numpy().tobytes())
        return self

    def hexdigest(self) -> str:
        return self._h.hexdigest()[:16]


def known_first(items: pl.DataFrame, cut: datetime | None) -> tuple[pl.DataFrame, int]:
    """Items that appeared before `cut` (all, without a cut) by id, then the later ones by id;
    and how many came first."""
    if cut is None:
        return items.sort("item_id"), items.height
    before = pl.col("first_appearance").is_not_null() & (pl.col("first_appearance") < cut)
    known, later = items.filter(before).sort("item_id"), items.filter(~before).sort("item_id")
    return pl.concat([known, later]), known.height


class StudentItems:
    """The items of one distill run on disk (a parquet file of KEPT columns, known items first):
    `height`, `n_known`, `digest`, `slice(start, size)`, and the `item_id` / `domain` columns."""

    def __init__(self, path: Path, n_known: int, digest: str, ids: pl.DataFrame) -> None:
        self.path, self.n_known, self.digest = path, n_known, digest
        self._ids = ids  # item_id, domain of every row, in order
        self.height = ids.height

    @classmethod
    def read(cls, ws: Workspace, settings: Settings, cut: datetime | None, path: Path) -> StudentItems:
        """Every answered item of the item_content mart through Feast, `student.read_batch_items` at a
        time, written to `path` known first (see the module docstring)."""
        import pyarrow.parquet as pq

        from rgcd.training.frames import item_first_appearance, items_mart, read_items_in_windows

        order, _ = known_first(item_first_appearance(items_mart(ws)), cut)
        window = settings.student.read_batch_items
        digest, ids, n_known = ItemsDigest(), [], 0
        path.parent.mkdir(parents=True, exist_ok=True)
        writer: pq.ParquetWriter | None = None
        try:  # a scratch file of this run (the caller removes it): no atomic rename needed
            for got, _missed in read_items_in_windows(ws, settings, order, window):
                got = got.select(KEPT)
                table = got.to_arrow()
                writer = writer or pq.ParquetWriter(path, table.schema)
                writer.write_table(table.cast(writer.schema), row_group_size=window)
                digest.update(got)
                ids.append(got.select("item_id", "domain"))
                if cut is not None:
                    n_known += got.filter(pl.col("first_appearance").is_not_null()
                                          & (pl.col("first_appearance") < cut)).height
        except BaseException:
            if writer is not None:
                writer.close()
            path.unlink(missing_ok=True)
            raise
        if writer is None:
            pl.DataFrame(schema={c: pl.String for c in KEPT}).write_parquet(path)
        else:
            writer.close()
        frame = pl.concat(ids) if ids else pl.DataFrame(schema={"item_id": pl.String, "domain": pl.String})
        return cls(path, n_known if cut is not None else frame.height, digest.hexdigest(), frame)

    def __getitem__(self, column: str) -> pl.Series:
        return self._ids[column]

    def schema(self, columns: list[str]) -> dict[str, pl.DataType]:
        """The file's types of `columns`."""
        got = pl.read_parquet_schema(self.path)
        return {c: got[c] for c in columns}

    @staticmethod
    def rows(path: Path, start: int, size: int) -> pl.DataFrame:
        """Rows start..start+size of an items file, read from the row groups that hold them."""
        return pl.scan_parquet(path).slice(start, size).collect()

    def slice(self, start: int, size: int) -> pl.DataFrame:
        """Rows start..start+size, read from the file."""
        return self.rows(self.path, start, size)

    def windows(self, stop: int | None = None, columns: list[str] | None = None,
                size: int = 50_000) -> Iterator[pl.DataFrame]:
        """The rows before `stop` (all: None), `size` at a time."""
        stop = self.height if stop is None else min(stop, self.height)
        for start in range(0, stop, size):
            lazy = pl.scan_parquet(self.path).slice(start, min(size, stop - start))
            yield (lazy.select(columns) if columns else lazy).collect()
