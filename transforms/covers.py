"""Cover images named by data (the contract's optional `cover_path`): which files may be read.

A cover_path comes from raw data, so it is untrusted: it can name any file (`/etc/passwd`,
`../../../etc/shadow`) and the teacher sends what it reads to a model endpoint. A cover is
accepted only when its path, symlinks resolved, lies inside one of the allowed folders (the data
folder and the workspace), names a regular file of at most `ingest.cover_max_bytes` bytes, and
the file starts like a PNG, JPEG, WebP or GIF image. Ingest quarantines a row whose cover fails
(`CoverPolicy.problem`, one of the fixed `REFUSED_*` reasons); the teacher reads covers only
through `read_cover`, which checks the open file again, so a file swapped after ingest is never
sent either. A relative cover_path is relative to the workspace folder (the README's rule).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from rgcd.errors import RgcdError

# (signature, mime type): the first bytes of each accepted image format; WebP is RIFF....WEBP.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
HEAD_BYTES = 16

REFUSED_OUTSIDE = "cover_path outside the data folder and the workspace"
REFUSED_MISSING = "cover_path names no regular file"
REFUSED_LARGE = "cover_path file larger than ingest.cover_max_bytes"
REFUSED_NOT_IMAGE = "cover_path file is not a PNG, JPEG, WebP or GIF image"

# The data folders ingest accepted covers from, kept in the lake so the teacher allows them too.
COVER_ROOTS_FILE = "cover_roots.json"


class CoverRefused(RgcdError):
    """A cover file that may not be read or sent; the message is one of the `REFUSED_*` reasons."""

    exit_code = 2


def image_type(head: bytes) -> str | None:
    """The mime type of an image whose file starts with `head`, or None when it is none of ours."""
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    for signature, mime in _MAGIC:
        if head.startswith(signature):
            return mime
    return None


@dataclass(frozen=True)
class CoverPolicy:
    """Where covers may live and how big they may be; `base` anchors relative paths."""

    roots: tuple[Path, ...]
    max_bytes: int
    base: Path

    @classmethod
    def of(cls, base: Path, roots: list[Path] | tuple[Path, ...], max_bytes: int) -> CoverPolicy:
        """A policy over resolved `roots` (the folders covers may be in)."""
        return cls(tuple(Path(r).resolve() for r in roots), max_bytes, Path(base).resolve())

    def resolve(self, value: str) -> Path:
        """The file `value` names, symlinks resolved; raises CoverRefused when outside the roots."""
        path = Path(value.strip())
        try:
            full = (path if path.is_absolute() else self.base / path).resolve()
        except (OSError, ValueError):  # a NUL byte, a name too long, a symlink loop
            raise CoverRefused(REFUSED_MISSING) from None
        if not any(full.is_relative_to(root) for root in self.roots):
            raise CoverRefused(REFUSED_OUTSIDE)
        return full

    def problem(self, value: str | None) -> str | None:
        """Why a cover_path value is refused (a `REFUSED_*` reason), or None when it is accepted.

        A missing or blank value is no cover at all, and accepted.
        """
        if value is None or not value.strip():
            return None
        try:
            read_cover(value, self, head_only=True)
        except CoverRefused as err:
            return str(err)
        return None


def read_cover(value: str, policy: CoverPolicy, *, head_only: bool = False) -> tuple[bytes, str]:
    """The bytes of an accepted cover file and its mime type; raises CoverRefused otherwise.

    The checks run on the opened file (no symlink is followed at the last step, the size and the
    first bytes are read from the same descriptor), so what is checked is what is read.
    """
    full = policy.resolve(value)
    try:
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        raise CoverRefused(REFUSED_MISSING) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a folder, a device, a FIFO
            raise CoverRefused(REFUSED_MISSING)
        if info.st_size > policy.max_bytes:
            raise CoverRefused(REFUSED_LARGE)
        data = os.read(fd, HEAD_BYTES if head_only else policy.max_bytes + 1)
    finally:
        os.close(fd)
    mime = image_type(data[:HEAD_BYTES])
    if mime is None:
        raise CoverRefused(REFUSED_NOT_IMAGE)
    if len(data) > policy.max_bytes:  # grew since fstat
        raise CoverRefused(REFUSED_LARGE)
    return data, mime


def recorded_roots(lake: Path) -> list[Path]:
    """The data folders ingest accepted covers from (empty when none were)."""
    path = lake / COVER_ROOTS_FILE
    if not path.is_file():
        return []
    return [Path(p) for p in json.loads(path.read_text()).get("roots", [])]
