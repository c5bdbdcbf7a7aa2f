"""Bad rows for the demo world, so that ingest's quarantine has something to do.

Every kind of bad row the data contract names (transforms/contract.py; README "Ingest"): missing
ids, unparsable and missing times, negative durations, ends before starts, unknown foreign keys,
duplicate keys, malformed CSV lines and vectors of the wrong length. Each bad row is a copy of a
random good row of the same file with exactly one defect, appended after the good rows, so that
it is quarantined for that one reason and no good row is lost: the original stays, a duplicate
is the later repeat, and no other row refers to a bad one. The manifest
(`<demo>/dirt_manifest.json`) counts the injected rows per file under ingest's own reason texts,
so a test can hold ingest's quarantine against it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from rgcd.transforms.contract import BY_STEM, VECTOR_DIMS, Kind, RawFile

MANIFEST = "dirt_manifest.json"
TIME_KINDS = (Kind.TIMESTAMP, Kind.DATETIME_STR, Kind.EPOCH_MS)
UNKNOWN_ID = 9_000_000_000_000  # far above every generated id


def _defects(spec: RawFile) -> list[tuple[str, str]]:
    """(kind, ingest's reason text) of every defect this file's contract can express."""
    out: list[tuple[str, str]] = []
    ints = [c for c in spec.columns if c.kind is Kind.INT and not c.nullable]
    times = [c for c in spec.columns if c.kind in TIME_KINDS and not c.nullable]
    if ints and len(spec.columns) > 1:  # a one-column CSV's empty cell is a blank line, skipped
        out.append(("missing_id", f"missing {ints[0].name}"))
    if times:
        out.append(("missing_time", f"missing {times[0].name}"))
        if spec.fmt == "csv":  # parquet timestamps cannot hold text
            out.append(("unparsable_time", f"unparsable {times[0].name}"))
    for c in spec.columns:
        if c.kind is Kind.VECTOR:
            out.append(("wrong_vector_length", f"{c.name} has not {VECTOR_DIMS[spec.stem]} values"))
    if spec.non_negative:
        out.append(("negative", f"negative {spec.non_negative[0]}"))
    if spec.interval:
        out.append(("end_before_start", "end before start"))
    if spec.foreign_keys:
        fk = spec.foreign_keys[0]
        out.append(("unknown_foreign_key", f"unknown {fk.column} (not in {fk.parent})"))
    if spec.key:
        out.append(("duplicate_key", f"duplicate key ({', '.join(spec.key)})"))
    if spec.fmt == "csv":
        n = len(spec.columns)
        out.append(("malformed_line", f"malformed CSV line ({n + 1} fields, header has {n})"))
    return out


def _break(spec: RawFile, kind: str, rows: pl.DataFrame) -> pl.DataFrame:
    """Copies of `rows` (raw encoding) with one defect of `kind`."""
    ints = [c.name for c in spec.columns if c.kind is Kind.INT and not c.nullable]
    times = [c for c in spec.columns if c.kind in TIME_KINDS and not c.nullable]
    if kind == "missing_id":
        return rows.with_columns(pl.lit(None, rows.schema[ints[0]]).alias(ints[0]))
    if kind == "missing_time":
        return rows.with_columns(pl.lit(None, rows.schema[times[0].name]).alias(times[0].name))
    if kind == "unparsable_time":
        return rows.with_columns(pl.lit("yesterday at 25:61").alias(times[0].name))
    if kind == "wrong_vector_length":
        col = next(c.name for c in spec.columns if c.kind is Kind.VECTOR)
        return rows.with_columns(pl.col(col).list.head(VECTOR_DIMS[spec.stem] // 2))
    if kind == "negative":
        name = spec.non_negative[0]
        return rows.with_columns(pl.lit(-60_000, rows.schema[name]).alias(name))
    if kind == "end_before_start":
        start, end = spec.interval or ("", "")
        return rows.with_columns(_earlier(spec, start, rows).alias(end))
    if kind == "unknown_foreign_key":
        col = spec.foreign_keys[0].column
        unknown = pl.lit(UNKNOWN_ID) + pl.int_range(pl.len())
        return rows.with_columns(unknown.cast(rows.schema[col]).alias(col))
    if kind == "duplicate_key":
        return rows
    raise ValueError(kind)


def _earlier(spec: RawFile, start: str, rows: pl.DataFrame) -> pl.Expr:
    """The start time one minute earlier, in the column's raw encoding."""
    kind = spec.column(start).kind
    col = pl.col(start)
    if kind is Kind.DATETIME_STR:
        return (col.str.to_datetime("%Y-%m-%d %H:%M:%S%.3f", time_unit="ms") - pl.duration(minutes=1)) \
            .dt.strftime("%Y-%m-%d %H:%M:%S%.3f")
    if kind is Kind.EPOCH_MS:
        return col - 60_000
    return col - pl.duration(minutes=1)


def dirty(encoded: dict[str, pl.DataFrame], rate: float, seed: int
          ) -> tuple[dict[str, pl.DataFrame], dict[str, list[str]], dict[str, dict[str, int]]]:
    """Append bad rows to raw-encoded frames at `rate` (a share of each file's rows).

    Returns (frames with bad rows appended, malformed CSV lines per file to append to the written
    files, manifest {stem: {reason: n}}). Every defect the file can carry gets
    ceil(rate * rows / defects) rows, so even a small rate shows each kind at least once.
    """
    rng = np.random.default_rng(seed + 104_729)
    frames, lines, manifest = {}, {}, {}
    for stem, frame in encoded.items():
        spec = BY_STEM[stem]
        defects = _defects(spec)
        if rate <= 0 or frame.height == 0 or not defects:
            frames[stem] = frame
            continue
        n = math.ceil(rate * frame.height / len(defects))
        bad, manifest[stem] = [], {}
        for kind, reason in defects:
            rows = frame[rng.integers(0, frame.height, n).tolist()]
            if kind == "malformed_line":
                text = rows.select(pl.all().cast(pl.Utf8).fill_null("")).write_csv(include_header=False)
                lines[stem] = [line + ",surplus field" for line in text.splitlines()]
            else:
                bad.append(_break(spec, kind, rows))
            manifest[stem][reason] = n
        frames[stem] = pl.concat([frame, *bad], how="vertical_relaxed")
    return frames, lines, manifest


def write_manifest(out: Path, rate: float, manifest: dict[str, dict[str, int]]) -> Path:
    """`<out>/dirt_manifest.json`: {"rate", "files": {stem: {reason: rows injected}}}."""
    from rgcd.atomic import write_json_atomic

    return write_json_atomic({"rate": rate, "files": manifest}, Path(out) / MANIFEST)


def append_lines(path: Path, lines: list[str]) -> None:
    """Append raw text lines to a written CSV file."""
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
