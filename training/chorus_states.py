"""The chorus-states file: what the student (`rgcd distill`) writes and stage 2 and serving read.

One memory-mapped float32 tensor (n_items, n_chorus, d) behind a small header, with its row index
(`chorus_index.parquet`) beside it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import polars as pl
import torch

from rgcd.errors import InputError
from rgcd.training.rows_on_disk import pread_rows

DOMAINS = ("photo", "live")


CHORUS_TENSOR = "chorus_states"



def write_states_file(path: Path, parts: list[Path], shape_tail: tuple[int, int], rows: int,
                      metadata: dict[str, str]) -> None:
    """One safetensors file of tensor `chorus_states` (rows x n_chorus x d, F32) from shard files,
    copied shard by shard: the merged tensor is never in memory (4 KB per item: 53 GB at 13M items).

    The layout is the safetensors one (8-byte little-endian header length, JSON header padded
    with spaces to 8 bytes, raw data), so `safetensors.safe_open` reads it like any other.
    """
    row_bytes = 4 * shape_tail[0] * shape_tail[1]
    header = {CHORUS_TENSOR: {"dtype": "F32", "shape": [rows, *shape_tail],
                              "data_offsets": [0, rows * row_bytes]}, "__metadata__": metadata}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    written = 0
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(text)) + text)
        for part in parts:
            shard = ChorusStates.from_file(part)
            for s in range(0, len(shard), 4096):
                block = shard.read(np.arange(s, min(s + 4096, len(shard))))
                out.write(block.tobytes())
                written += len(block)
    if written != rows:
        raise InputError(f"{path}: the shards hold {written} items, expected {rows}")



class ChorusStates:
    """`chorus_states.safetensors` read on demand: rows are read when asked, never all at once.

    The file is safetensors (8-byte header length, JSON header, raw little-endian data); rows of
    the tensor `chorus_states` (N x n_chorus x d, float32) are read with pread into fresh arrays,
    one read per run of consecutive rows. Not memory-mapped: mapped pages that were touched
    count in the process's resident memory until unmapped (a pass over all states made the
    stage's peak grow by the whole file), while read pages stay in the kernel's page cache.
    `chorus_index.parquet` gives each row's item_id and domain.
    """

    def __init__(self, student_dir: Path) -> None:
        path, index = student_dir / "chorus_states.safetensors", student_dir / "chorus_index.parquet"
        if not (path.exists() and index.exists()):
            raise FileNotFoundError(f"{path} is missing: run `rgcd distill` first (stage 2 reads "
                                    "the student's chorus states)")
        self._open(path)
        rows = pl.read_parquet(index).sort("row")
        self.item_ids: list[str] = rows["item_id"].to_list()
        self.domains = np.array([DOMAINS.index(d) for d in rows["domain"].to_list()], dtype=np.int64)
        self.row_of = {item: i for i, item in enumerate(self.item_ids)}

    @classmethod
    def from_file(cls, path: Path) -> ChorusStates:
        """The tensor of a states file (a shard) without an index: `read` and `len` only."""
        self = cls.__new__(cls)
        self._open(path)
        self.item_ids = []
        return self

    def _open(self, path: Path) -> None:
        with path.open("rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        entry = header[CHORUS_TENSOR]
        if entry["dtype"] != "F32":
            raise InputError(f"{path}: chorus_states is {entry['dtype']}, expected F32")
        self.shape = tuple(entry["shape"])
        self._row_bytes = 4 * int(np.prod(self.shape[1:]))
        self._data = 8 + n + entry["data_offsets"][0]
        self._file = path.open("rb", buffering=0)  # closed with the object
        self.path = path
        self.metadata: dict[str, str] = header.get("__metadata__") or {}
        self.student_version = self.metadata.get("model_version", "")

    def __len__(self) -> int:
        return int(self.shape[0])

    @property
    def dim(self) -> int:
        return int(self.shape[2])

    def read(self, rows: np.ndarray) -> np.ndarray:
        """States of sorted, distinct `rows`, (len(rows), n_chorus, d), one pread per run."""
        out = np.empty((len(rows), *self.shape[1:]), dtype="<f4")
        pread_rows(self._file.fileno(), self._data, self._row_bytes, rows, out, self.path)
        return out

    def take(self, rows: np.ndarray) -> torch.Tensor:
        """States of `rows` (any order, repeats allowed), (len(rows), n_chorus, d)."""
        uniq, inverse = np.unique(rows, return_inverse=True)  # sorted reads, each row once
        return torch.from_numpy(self.read(uniq)[inverse])

    def pooled_rows(self, rows: np.ndarray, chunk: int = 4096) -> PooledRows:
        """The mean over the chorus tokens of `rows` only (e.g. the items of the pairs), read chunk by
        chunk, indexed by their row numbers in the whole file."""
        return PooledRows(self, rows, chunk)

    def mean_pooled(self, chunk: int = 4096) -> np.ndarray:
        """(N, d) mean over the chorus tokens, read chunk by chunk."""
        if not len(self):
            return np.empty((0, self.dim), dtype="<f4")
        return np.concatenate([self.read(np.arange(s, min(s + chunk, len(self)))).mean(axis=1)
                               for s in range(0, len(self), chunk)])


class PooledRows:
    """Mean-pooled chorus states of some rows, indexed like the whole file (`pooled[rows]`), so a
    pass over pairs holds the pairs' items, not the catalogue."""

    def __init__(self, states: ChorusStates, rows: np.ndarray, chunk: int = 4096) -> None:
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        parts = [states.read(self.rows[s:s + chunk]).mean(axis=1) for s in range(0, len(self.rows), chunk)]
        self.values = np.concatenate(parts) if parts else np.empty((0, states.dim), dtype="<f4")

    def __getitem__(self, index) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        at = np.searchsorted(self.rows, index)
        if len(index) and (at.max() >= len(self.rows) or not np.array_equal(self.rows[at], index)):
            raise KeyError("a row outside the pooled rows was asked for")
        return self.values[at]
