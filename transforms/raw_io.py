"""Writing frames in the raw KuaiLive-M3 encodings (the inverse of what ingest reads).

The demo generator and the tests write raw files through here, so every producer of raw files
uses the same encodings: parquet timestamps in ms (naive, meaning UTC), CSV datetimes as
"YYYY-MM-DD HH:MM:SS.mmm", epoch-ms integers where the contract says so.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from rgcd.transforms.contract import BY_STEM, DATETIME_FORMAT, Kind


def encode_raw(stem: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Cast a frame with datetime columns to the raw encoding of file `stem`.

    Datetime columns may be naive (taken as UTC) or UTC-aware. Columns the contract does not
    know are passed through unchanged, so tests can also write broken files.
    """
    spec = BY_STEM[stem]
    exprs = []
    for name, dtype in frame.schema.items():
        try:
            kind = spec.column(name).kind
        except KeyError:
            exprs.append(pl.col(name))
            continue
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            naive = col.dt.replace_time_zone(None) if dtype.time_zone else col
            naive = naive.dt.cast_time_unit("ms")
            if kind is Kind.DATETIME_STR:
                col = naive.dt.strftime(DATETIME_FORMAT)
            elif kind is Kind.EPOCH_MS:
                col = naive.dt.epoch("ms")
            else:
                col = naive
        exprs.append(col.alias(name))
    return frame.select(exprs)


def write_raw(folder: Path, stem: str, frame: pl.DataFrame) -> Path:
    """Write `frame` as `<folder>/<stem>.<csv|parquet>` in the raw encoding; returns the path."""
    spec = BY_STEM[stem]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.filename
    encoded = encode_raw(stem, frame)
    if spec.fmt == "csv":
        encoded.write_csv(path)
    else:
        encoded.write_parquet(path)
    return path
