"""Float32 tensors kept on disk in the safetensors layout: written block by block, read row by row.

Stage 2 encodes every item of the catalogue (13.3M at KuaiLive-M3's size: 5.1 GB for its two
vectors alone). Its vectors go to a file as each chunk is encoded (`RowsWriter`) and are read back
with pread for the rows a step asks for (`RowsOnDisk`), so no pass holds the whole catalogue.
Not memory-mapped, for the reason `rgcd.training.chorus_states.ChorusStates` gives: a mapped page
that was touched counts in the process's resident memory until it is unmapped, while a read page
stays in the kernel's page cache.

The layout is safetensors' (8-byte little-endian header length, JSON header padded with spaces to
8 bytes, the tensors' raw data one after another), so `safetensors.safe_open` reads the files,
and files written by `safetensors.save_file` read here.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from rgcd.errors import InputError


def pread_rows(fd: int, data_offset: int, row_bytes: int, rows: np.ndarray, out: np.ndarray,
               path: Path) -> None:
    """Fill `out` with the rows `rows` (sorted, distinct) of the tensor at `data_offset` of the open
    file `fd`: one pread per run of consecutive rows."""
    if not len(rows):
        return
    cuts = np.flatnonzero(np.diff(rows) != 1) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(rows)], strict=True):
        buf = memoryview(out[lo:hi]).cast("B")
        got = os.preadv(fd, [buf], data_offset + int(rows[lo]) * row_bytes)
        if got != len(buf):
            raise InputError(f"{path}: truncated (rows {rows[lo]}..{rows[hi - 1]} missing)")


class RowsWriter:
    """A safetensors file of F32 tensors whose shapes are known first, filled block by block in any
    order (`write(name, start, block)`); `close` checks that every row was written once."""

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]],
                 metadata: dict[str, str] | None = None) -> None:
        self.path, self.shapes = path, {k: tuple(int(x) for x in v) for k, v in shapes.items()}
        header: dict = {}
        offset = 0
        self._offsets: dict[str, int] = {}
        for name, shape in self.shapes.items():
            size = 4 * int(np.prod(shape))
            header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
            self._offsets[name] = offset
            offset += size
        if metadata:
            header["__metadata__"] = metadata
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self._data = 8 + len(text)
        self._written = dict.fromkeys(self.shapes, 0)
        self._file = path.open("wb")
        self._file.write(struct.pack("<Q", len(text)) + text)
        self._file.truncate(self._data + offset)

    def _row_bytes(self, name: str) -> int:
        return 4 * int(np.prod(self.shapes[name][1:]))

    def write(self, name: str, start: int, block: np.ndarray) -> None:
        """Rows start..start+len(block) of tensor `name`."""
        block = np.ascontiguousarray(block, dtype="<f4")
        if block.shape[1:] != self.shapes[name][1:] or start + len(block) > self.shapes[name][0]:
            raise ValueError(f"{name}: block {block.shape} at row {start} does not fit {self.shapes[name]}")
        os.pwrite(self._file.fileno(), block.tobytes(),
                  self._data + self._offsets[name] + start * self._row_bytes(name))
        self._written[name] += len(block)

    def discard(self) -> None:
        """Close after a failure, without the check (the caller's atomic path drops the file)."""
        self._file.close()

    def close(self) -> None:
        """Flush and close; an error if a tensor's rows were not all written."""
        self._file.close()
        short = {k: (n, self.shapes[k][0]) for k, n in self._written.items() if n != self.shapes[k][0]}
        if short:
            raise InputError(f"{self.path}: rows written vs expected per tensor: {short}")


class RowsOnDisk:
    """One F32 tensor of a safetensors file, read on demand: `rows[index]` for an int, a slice or an
    array of row numbers (any order, repeats allowed) reads just those rows. `np.asarray(rows)`
    reads it whole (tests and tiny worlds only)."""

    def __init__(self, path: Path, name: str) -> None:
        with path.open("rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        if name not in header:
            held = sorted(k for k in header if k != "__metadata__")
            raise InputError(f"{path} has no tensor {name!r} (it has {held})")
        entry = header[name]
        if entry["dtype"] != "F32":
            raise InputError(f"{path}: {name} is {entry['dtype']}, expected F32")
        self.path, self.name = path, name
        self.shape: tuple[int, ...] = tuple(entry["shape"])
        self.metadata: dict[str, str] = header.get("__metadata__") or {}
        self._row_bytes = 4 * int(np.prod(self.shape[1:]))
        self._data = 8 + n + entry["data_offsets"][0]
        self._file = path.open("rb", buffering=0)  # closed with the object

    @staticmethod
    def names(path: Path) -> list[str]:
        """The tensors a safetensors file holds."""
        with path.open("rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            return [k for k in json.loads(f.read(n)) if k != "__metadata__"]

    def __len__(self) -> int:
        return int(self.shape[0])

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows `rows` (sorted, distinct), one pread per run of consecutive rows."""
        out = np.empty((len(rows), *self.shape[1:]), dtype="<f4")
        pread_rows(self._file.fileno(), self._data, self._row_bytes, rows, out, self.path)
        return out

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            rows = np.arange(*index.indices(len(self)))
            return self.read(rows) if (index.step or 1) > 0 else self[rows]
        if np.isscalar(index):
            return self.read(np.array([int(index) % len(self)]))[0]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        uniq, inverse = np.unique(index, return_inverse=True)  # sorted reads, each row once
        return self.read(uniq)[inverse.reshape(index.shape)]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self.read(np.arange(len(self)))
        return whole if dtype is None else whole.astype(dtype)
