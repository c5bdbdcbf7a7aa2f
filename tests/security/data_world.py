"""A tiny raw world in the KuaiLive-M3 layout for the hostile-data tests (every required file).

Four users, two authors, three short videos, two live rooms, nine plays and four live sessions on
one day of 2026; the tests then spoil one file the way an attacker or a careless export would.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import tiny_raw
from PIL import Image

from rgcd.transforms.raw_io import write_raw

DAY = datetime(2026, 3, 1, 8, 0, 0)


def plays(day: datetime = DAY) -> pl.DataFrame:
    """Nine plays: users 1-3 x photos 10-12, seven minutes apart."""
    return tiny_raw.plays(day, [1, 2, 3], [10, 11, 12])


def sessions(day: datetime = DAY) -> pl.DataFrame:
    """Four live sessions, one per user 1-4, eleven minutes apart."""
    return tiny_raw.sessions(day, [1, 2, 3, 4])


def photo_meta(**extra: list) -> pl.DataFrame:
    """The three short videos; `extra` adds columns (cover_path, ...)."""
    return pl.DataFrame({"photo_id": [10, 11, 12], "author_id": [100, 101, 100],
                         "duration": [15_000, 30_000, 9_000], "display_type": [1, 1, 2],
                         "cover_title": ["a", "b", ""], "video_texts": ["x", "y", "z"], **extra})


def raw_world(folder: Path, *, photos: pl.DataFrame | None = None) -> Path:
    """Write every required file of the tiny world to `folder`; returns it."""
    write_raw(folder, "user_id_set", pl.DataFrame({"user_id": [1, 2, 3, 4]}))
    write_raw(folder, "author_profile", tiny_raw.author_profile())
    write_raw(folder, "photo_meta", photos if photos is not None else photo_meta())
    write_raw(folder, "photo_tag", tiny_raw.photo_tag())
    write_raw(folder, "live_room_meta", pl.DataFrame({
        "live_id": [900, 901], "author_id": [101, 101], "live_name": ["room", ""],
        "start_timestamp": [DAY - timedelta(hours=1), DAY],
        "end_timestamp": [DAY + timedelta(hours=30), None], "live_duration": [31 * 3600_000, None]}))
    write_raw(folder, "photo_play", plays())
    write_raw(folder, "live_interaction", sessions())
    return folder


def png(path: Path, size: tuple[int, int] = (8, 8)) -> Path:
    """A real PNG image at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


def lake_and_quarantine(root: Path) -> dict[str, bytes]:
    """Every file of a workspace's lake and quarantine, by relative path (to compare before/after)."""
    return {str(p.relative_to(root)): p.read_bytes()
            for folder in (root / "lake", root / "quarantine") if folder.exists()
            for p in sorted(folder.rglob("*")) if p.is_file()}
