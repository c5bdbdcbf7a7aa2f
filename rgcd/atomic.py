"""Atomic writes: a file is written beside its final place and moved in with one rename.

A reader (or a rerun after a kill) sees the old file or the new one, never half of either.
The data is fsynced before the rename and the folder after it, so a power loss cannot leave
a renamed but empty file. Temp files are named `.<name>.tmp-<pid>-<n>` beside the target:
same filesystem (rename is atomic only there) and hidden from globs such as `part-*.parquet`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

_counter = itertools.count()
TEMP_MARK = ".tmp-"


def temp_path_beside(final: Path) -> Path:
    """A fresh hidden name in `final`'s folder for a file or folder that will replace `final`."""
    return final.with_name(f".{final.name}{TEMP_MARK}{os.getpid()}-{next(_counter)}")


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            fsync_path(p)
    fsync_path(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temp path beside `final`; on success it is fsynced and renamed over `final`.

    The body writes a file (or creates a folder) at the yielded path. On an exception the temp
    is removed and `final` is left as it was. A folder replaces a folder: the old one is moved
    aside first and removed after the new one is in place (two renames; a kill between them
    leaves the old folder under a hidden temp name and no `final`, which callers rebuild).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_beside(final)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written at {tmp} for {final}")
        _fsync_tree(tmp)
        if tmp.is_dir() and final.is_dir():
            old = temp_path_beside(final)
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
        fsync_path(final.parent)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes_atomic(data: bytes, path: Path) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(text: str, path: Path) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    return write_bytes_atomic(text.encode("utf-8"), path)


def write_json_atomic(obj: Any, path: Path, indent: int | None = 2) -> Path:
    """Write `obj` as JSON (UTF-8, keys in the order given) to `path` atomically."""
    return write_text_atomic(json.dumps(obj, indent=indent, ensure_ascii=False, default=str), path)


def write_parquet_atomic(table: Any, path: Path, **options: Any) -> Path:
    """Write a pyarrow Table or a polars DataFrame to `path` as parquet, atomically.

    `options` go to the writer (polars `write_parquet` or pyarrow `pq.write_table`).
    """
    with atomic_path(path) as tmp:
        if isinstance(table, pa.Table):
            pq.write_table(table, tmp, **options)
        elif hasattr(table, "write_parquet"):
            table.write_parquet(tmp, **options)
        else:
            raise TypeError(
                f"write_parquet_atomic takes a pyarrow Table or a polars DataFrame, not {type(table)}"
            )
    return Path(path)


def remove_stale_temps(folder: Path) -> int:
    """Remove temp files a killed writer left in `folder` (not recursive); return how many."""
    n = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and TEMP_MARK in p.name:
                _remove(p)
                n += 1
    return n


def append_json_line(obj: Any, path: Path) -> Path:
    """Append `obj` as one JSON line to a log file (created with its folder). A line torn by a kill
    mid-write is closed first, so that it costs only itself, never the line after it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as out:
        torn = False
        if out.tell() > 0:
            out.seek(-1, os.SEEK_END)
            torn = out.read(1) != b"\n"
        out.write((b"\n" if torn else b"") + json.dumps(obj).encode() + b"\n")
    return path
