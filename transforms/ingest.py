"""Raw KuaiLive-M3 folder -> validated lake, with every rejected row kept in the quarantine.

The flow per raw file (parents before children, `contract.ingest_order`):

1. The layout is checked first, for every file, before anything is written: a missing required
   file or column raises `ContractError` naming the file and the column.
2. The file is streamed in batches of `IngestConfig.batch_rows` rows, fewer when rows are wide
   (`batch_mib`); parquet by row-group batches, CSV by blocks. Each batch is normalised to the
   lake types and checked row by row: missing or unparsable values, negative durations and
   counts, intervals that end before they start, ids their parent table does not know.
   Accepted rows go to staged parquet files, one per day partition for event tables; rejected
   rows go to a staged quarantine file with a `reason`.
3. Each staged partition is then reconciled with the lake: rows repeating a key already seen in
   the same file are quarantined as duplicates, lake rows with a key the new data also has are
   replaced (a rerun replaces, never appends), other lake rows are kept. The result is staged too.
4. All or nothing per run: only when every file of the run is staged are the staged files moved
   into the lake, by renames listed first in a journal (`<ws>/.ingest-commit.json`). A run that
   fails or is killed before the journal leaves the lake and quarantine as they were; one killed
   during the renames is completed from the journal by the next ingest (or build).

Foreign keys are checked against the accepted keys of the parent as this run leaves it (its
staged result over the lake), so a later folder holding only new events still finds parents from
earlier ones. A file that cannot be read (corrupt body, bad encoding, wrong delimiter) stops the
run with a ContractError naming the file and the cause, before anything is moved.
Memory holds one batch, the foreign-key sets and the key columns of one partition at a time.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rgcd.atomic import fsync_path, write_json_atomic
from rgcd.config import IngestConfig, Workspace
from rgcd.errors import RgcdError
from rgcd.faults import kill_point
from rgcd.transforms.contract import VECTOR_DIMS, Kind, RawFile, ingest_order
from rgcd.transforms.latent import copy_latent

# Spellings of "no value" in CSV exports (pandas, Hive, Spark) for columns that are not free text.
NULL_TOKENS = ("", "null", "NULL", "None", "nan", "NaN", "NA", "N/A", "\\N")
PARTITION_PREFIX = "event_date="
PART_NAME = "part-0.parquet"
COMPRESSION = "zstd"
_ROW = "__source_row"
_DAY = "__event_date"
_REASON = "reason"
RAW_LINE = "raw_line"


class ContractError(RgcdError):
    """A raw file breaks the contract as a whole (missing file or column, unreadable); exit code 2.

    Layout problems are found before anything is read; a file found unreadable while it is
    streamed stops the run before anything is moved into the lake (no file of the run lands).
    """

    exit_code = 2


@dataclass
class FileCounts:
    """Rows of one raw file: read = accepted + quarantined."""

    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def as_tuple(self) -> tuple[int, int, int]:
        """(read, accepted, quarantined)."""
        return self.read, self.accepted, self.quarantined


@dataclass
class IngestReport:
    """What one ingest did, per raw file."""

    src: Path
    files: dict[str, FileCounts] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # optional files absent from the folder
    seconds: float = 0.0

    @property
    def read(self) -> int:
        return sum(c.read for c in self.files.values())

    @property
    def accepted(self) -> int:
        return sum(c.accepted for c in self.files.values())

    @property
    def quarantined(self) -> int:
        return sum(c.quarantined for c in self.files.values())

    def one_line(self) -> str:
        """One line of figures for the stage summary."""
        share = self.quarantined / self.read if self.read else 0.0
        rate = self.read / self.seconds if self.seconds else 0.0
        skipped = f", {len(self.skipped)} optional absent" if self.skipped else ""
        return (f"{len(self.files)} files{skipped}: {self.read:,} rows read, {self.accepted:,} accepted, "
                f"{self.quarantined:,} quarantined ({share:.2%}) in {self.seconds:.1f}s "
                f"({rate:,.0f} rows/s)")

    def as_json(self) -> dict:
        """`{"files": {stem: {"read", "accepted", "quarantined"}}}` for `rgcd ingest --json`."""
        return {"files": {stem: {"read": c.read, "accepted": c.accepted, "quarantined": c.quarantined}
                          for stem, c in self.files.items()}}

    def table(self) -> Table:
        """A rich table: counts and the most frequent quarantine reasons per file."""
        table = Table(title=f"ingest {self.src}", caption=self.one_line())
        table.add_column("file")
        table.add_column("read", justify="right")
        table.add_column("accepted", justify="right")
        table.add_column("quarantined", justify="right")
        table.add_column("top reasons")
        for stem, c in self.files.items():
            top = "; ".join(f"{r} ×{n:,}" for r, n in c.reasons.most_common(3))
            table.add_row(stem, f"{c.read:,}", f"{c.accepted:,}", f"{c.quarantined:,}", top)
        for stem in self.skipped:
            table.add_row(stem, "-", "-", "-", "[dim]optional, absent[/]")
        return table


# ---------------------------------------------------------------------------------------------
# Layout check


@dataclass(frozen=True)
class _Source:
    spec: RawFile
    path: Path
    columns: tuple[str, ...]  # contract columns present in the file, contract order


def _header(path: Path, fmt: str) -> list[str]:
    if fmt == "parquet":
        try:
            return pq.ParquetFile(path).schema_arrow.names
        except Exception as err:  # noqa: BLE001 - any reader error means the same to the user
            raise ContractError(f"{path.name} cannot be read as parquet ({err}); "
                                "replace it with a valid parquet file") from err
    with path.open("rb") as fh:
        first = fh.readline()  # only the header: a bad byte further down is the reader's to report
    if not first:
        raise ContractError(f"{path.name} is empty; it needs at least a header line")
    try:
        return next(csv.reader([first.decode("utf-8-sig")]))
    except UnicodeDecodeError as err:
        raise ContractError(_not_utf8(path, err)) from None


def _not_utf8(path: Path, err: Exception) -> str:
    return (f"{path.name} is not UTF-8 text ({err}); the data contract's CSV files are UTF-8: "
            f"convert it (e.g. `iconv -f GB18030 -t UTF-8`) and rerun")


_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def _one_column_hint(names: list[str]) -> str:
    """Why a CSV header came out as one column: the file uses another delimiter."""
    if len(names) != 1:
        return ""
    for mark, word in _DELIMITERS.items():
        if mark in names[0]:
            return (f" (its header was read as one column {names[0][:60]!r}: the file is "
                    f"{word}-delimited; the data contract's CSV files are comma-delimited: "
                    "re-export it with commas)")
    return ""


def check_layout(src: Path) -> tuple[list[_Source], list[str]]:
    """The contract's files found in `src` (parents first) and the optional ones absent.

    Raises ContractError listing every missing required file and column, before anything is read.
    """
    problems: list[str] = []
    sources: list[_Source] = []
    skipped: list[str] = []
    for spec in ingest_order():
        path = src / spec.filename
        if not path.is_file():
            if spec.required:
                other = "csv" if spec.fmt == "parquet" else "parquet"
                hint = (f" (found {spec.stem}.{other}; the contract expects {spec.fmt})"
                        if (src / f"{spec.stem}.{other}").exists() else "")
                problems.append(f"{src} has no {spec.filename}{hint}: it is required by the data "
                                 "contract; add it, or point ingest at a folder in the KuaiLive-M3 "
                                 "layout (`rgcd demo-data OUT` writes one)")
            else:
                skipped.append(spec.stem)
            continue
        header = _header(path, spec.fmt)
        names = set(header)
        missing = [c.name for c in spec.columns if c.name not in names]
        hint = _one_column_hint(header) if missing else ""
        if hint:
            problems.append(f"{spec.filename} has none of the contract's columns{hint}")
            continue
        for name in missing:
            problems.append(f"{spec.filename} has no column {name} (required by the data contract; "
                            "see the README's Data contract); add the column and rerun")
        present = tuple(c.name for c in (*spec.columns, *spec.extra_optional) if c.name in names)
        sources.append(_Source(spec, path, present))
    if problems:
        raise ContractError("\n".join(problems))
    return sources, skipped


# ---------------------------------------------------------------------------------------------
# Reading in batches


def _row_bytes(source: _Source) -> float:
    """Approximate in-memory bytes per row of a raw file (parquet metadata, or a CSV sample)."""
    if source.spec.fmt == "parquet":
        meta = pq.ParquetFile(source.path).metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        return max(size / max(meta.num_rows, 1), 1.0)
    with source.path.open("rb") as fh:
        sample = fh.read(1 << 20)
    return max(len(sample) / max(sample.count(b"\n"), 1), 1.0)


def batch_rows_for(source: _Source, cfg: IngestConfig) -> int:
    """Rows per batch: `cfg.batch_rows`, fewer for wide rows (vectors) to stay near `cfg.batch_mib`."""
    by_bytes = int(cfg.batch_mib * 2**20 / _row_bytes(source))
    return max(min(cfg.batch_rows, by_bytes), 1)


def _batches(source: _Source, batch_rows: int, malformed: list[tuple[str, str]]
             ) -> Iterator[pa.RecordBatch]:
    """Record batches of at most `batch_rows` rows of the contract's columns of one raw file.

    CSV lines with the wrong number of fields are skipped by the reader and appended to
    `malformed` as (line text, reason) for the caller to quarantine.
    """
    if source.spec.fmt == "parquet":
        yield from pq.ParquetFile(source.path).iter_batches(batch_size=batch_rows,
                                                            columns=list(source.columns))
        return
    def keep_malformed(row: pacsv.InvalidRow) -> str:
        malformed.append((row.text, f"malformed CSV line ({row.actual_columns} fields, "
                                    f"header has {row.expected_columns})"))
        return "skip"

    # Every CSV column is read as text: the contract decides how to parse it, so a bad value
    # becomes a quarantined row instead of a failed read.
    undecodable: list[BaseException] = []
    try:
        with _undecodable_rows(undecodable):
            reader = pacsv.open_csv(
                source.path,
                # a block must hold at least one whole row, hence the 1 MiB floor
                read_options=pacsv.ReadOptions(
                    block_size=int(max(_row_bytes(source) * batch_rows, 1 << 20))),
                parse_options=pacsv.ParseOptions(newlines_in_values=True,
                                                 invalid_row_handler=keep_malformed),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(source.columns),
                    column_types={c: pa.string() for c in source.columns},
                    strings_can_be_null=False),
            )
            for batch in reader:
                for start in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(start, batch_rows)
    except pa.ArrowInvalid as err:
        # every column is read as text, so the only conversion that can fail is the decoding
        if undecodable:
            raise ContractError(_not_utf8(source.path, undecodable[0])) from None
        if "UTF8" not in str(err):
            raise
        raise ContractError(_not_utf8(source.path, err)) from None


@contextlib.contextmanager
def _undecodable_rows(seen: list[BaseException]) -> Iterator[None]:
    """Catch what pyarrow cannot hand to the malformed-row handler (a line that is not UTF-8).

    pyarrow decodes the line before calling the handler and reports a failure there as an
    "Exception ignored" traceback on stderr; it is collected here and reported as not UTF-8.
    """
    previous = sys.unraisablehook

    def collect(unraisable) -> None:
        if isinstance(unraisable.exc_value, UnicodeDecodeError):
            seen.append(unraisable.exc_value)
        else:
            previous(unraisable)

    sys.unraisablehook = collect
    try:
        yield
    finally:
        sys.unraisablehook = previous


# ---------------------------------------------------------------------------------------------
# Normalising and checking one batch


def _parse(name: str, kind: Kind, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """(value in the lake type, raw value missing) for one column of a batch."""
    raw = pl.col(name)
    text = isinstance(dtype, pl.String)
    if kind is Kind.STR:
        value = raw if text else raw.cast(pl.String)
        return value, raw.is_null()
    if text:
        stripped = raw.str.strip_chars()
        missing = raw.is_null() | stripped.is_in(NULL_TOKENS)
        s = pl.when(missing).then(None).otherwise(stripped)
    else:
        # NaN in a float column is how pandas writes a missing integer
        missing = (raw.is_null() | raw.is_nan()) if dtype.is_float() else raw.is_null()
        s = raw
    if kind is Kind.INT:
        if text:
            as_float = s.cast(pl.Float64, strict=False)
            # "3.0" from a float-typed export is the integer 3; "3.5" is not an integer
            integral = pl.when(as_float == as_float.floor()).then(as_float).otherwise(None)
            value = pl.coalesce(s.cast(pl.Int64, strict=False), integral.cast(pl.Int64, strict=False))
        elif dtype.is_float():
            value = pl.when(s == s.floor()).then(s).otherwise(None).cast(pl.Int64, strict=False)
        else:
            value = s.cast(pl.Int64, strict=False)
    elif kind in (Kind.TIMESTAMP, Kind.DATETIME_STR, Kind.EPOCH_MS):
        value = _parse_time(s, dtype)
    elif kind is Kind.DATE_STR:
        value = s if text else s.cast(pl.String)
        value = pl.when(value.str.contains(r"^\d{8}$")).then(value).otherwise(None)
    elif kind is Kind.VECTOR:
        if isinstance(dtype, pl.Array):
            s = s.arr.to_list()
        value = s.cast(pl.List(pl.Float32), strict=False) if isinstance(dtype, pl.List | pl.Array) \
            else pl.lit(None, pl.List(pl.Float32))
    else:  # pragma: no cover - every Kind is handled above
        raise AssertionError(kind)
    return value, missing


def _parse_time(s: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Any accepted time encoding -> Datetime(ms, UTC); naive values are taken as UTC."""
    utc = pl.Datetime("ms", "UTC")
    if isinstance(dtype, pl.Datetime):
        aware = s.dt.convert_time_zone("UTC") if dtype.time_zone else s.dt.replace_time_zone("UTC")
        return aware.dt.cast_time_unit("ms")
    if isinstance(dtype, pl.Date):
        return s.cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    if dtype.is_integer():
        return pl.from_epoch(s.cast(pl.Int64), time_unit="ms").dt.cast_time_unit("ms") \
            .dt.replace_time_zone("UTC")
    if isinstance(dtype, pl.String):
        epoch = pl.from_epoch(s.cast(pl.Int64, strict=False), time_unit="ms").dt.cast_time_unit("ms")
        parsed = [s.str.strptime(pl.Datetime("ms"), fmt, strict=False)
                  for fmt in ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d")]
        naive = pl.when(s.str.contains(r"^-?\d+$")).then(epoch).otherwise(pl.coalesce(parsed))
        return naive.dt.replace_time_zone("UTC")
    return pl.lit(None, utc)


def _normalise(frame: pl.DataFrame, name: str, kind: Kind) -> list[pl.Series]:
    """[missing flags, values in the lake type] of one column of a batch, named for `_check`.

    Clean text columns take a fast path (one cast or one strptime); only a column where that
    leaves a non-empty value unparsed pays for the tolerant parse (whitespace, null spellings,
    "3.0", epoch-ms text, ISO 'T').
    """
    dtype = frame.schema[name]
    raw = pl.col(name)
    fast: pl.Expr | None = None
    if isinstance(dtype, pl.String) and kind is Kind.INT:
        fast = raw.cast(pl.Int64, strict=False)
    elif isinstance(dtype, pl.String) and kind in (Kind.TIMESTAMP, Kind.DATETIME_STR, Kind.EPOCH_MS):
        fast = raw.str.strptime(pl.Datetime("ms"), "%Y-%m-%d %H:%M:%S%.f", strict=False) \
            .dt.replace_time_zone("UTC")
    if fast is not None:
        missing = raw.is_null() | (raw == "")
        out = frame.select(missing.alias(f"__missing_{name}"), fast.alias(f"__value_{name}"))
        flags, values = out.get_columns()
        if not (values.is_null() & ~flags).any():
            return [flags, values]
    value, missing = _parse(name, kind, dtype)
    out = frame.select(missing.alias(f"__missing_{name}"), value.alias(f"__value_{name}"))
    return out.get_columns()


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """The original value as a string, for the quarantine."""
    col = pl.col(name)
    if isinstance(dtype, pl.String):
        return col
    if isinstance(dtype, pl.List | pl.Array):
        lst = col.arr.to_list() if isinstance(dtype, pl.Array) else col
        return lst.list.eval(pl.element().cast(pl.String)).list.join(",")
    return col.cast(pl.String)


def _check(frame: pl.DataFrame, source: _Source, parent_keys: dict[str, pl.Series]
           ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split one raw batch into (accepted rows in lake types, rejected raw rows as text + reason)."""
    spec = source.spec
    parsed: list[pl.Series] = []
    reasons: list[tuple[pl.Expr, str]] = []
    for name in source.columns:
        col = spec.column(name)
        parsed += _normalise(frame, name, col.kind)
        is_missing, parsed_value = pl.col(f"__missing_{name}"), pl.col(f"__value_{name}")
        if not col.nullable:
            reasons.append((is_missing, f"missing {name}"))
        reasons.append((~is_missing & parsed_value.is_null(), f"unparsable {name}"))
        if col.kind is Kind.VECTOR and spec.stem in VECTOR_DIMS:
            dim = VECTOR_DIMS[spec.stem]
            reasons.append((parsed_value.list.len() != dim, f"{name} has not {dim} values"))
    # From here on the checks read the normalised values; a null there is already explained.
    for name in spec.non_negative:
        reasons.append((pl.col(f"__value_{name}") < 0, f"negative {name}"))
    if spec.interval:
        start, end = spec.interval
        reasons.append((pl.col(f"__value_{end}") < pl.col(f"__value_{start}"), "end before start"))
    for fk in spec.foreign_keys:
        reasons.append((~pl.col(f"__value_{fk.column}").is_in(parent_keys[fk.column].implode()),
                        f"unknown {fk.column} (not in {fk.parent})"))
    # the first failing check, in contract order, is the row's reason
    reason = pl.coalesce([pl.when(cond.fill_null(False)).then(pl.lit(text)) for cond, text in reasons])
    checked = frame.with_columns(*parsed).with_columns(reason.alias(_REASON))
    good = checked.filter(pl.col(_REASON).is_null()).select(
        _ROW, *[pl.col(f"__value_{n}").alias(n) for n in source.columns])
    # only rejected rows pay for the conversion of their original values to text
    bad = checked.filter(pl.col(_REASON).is_not_null()).select(
        *[_as_text(n, frame.schema[n]).alias(n) for n in source.columns], _REASON,
        pl.col(_ROW).alias("source_row"))
    return good, bad


# ---------------------------------------------------------------------------------------------
# Writing


def _lake_schema(source: _Source) -> pa.Schema:
    return source.spec.lake_schema(set(source.columns))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns (absent ones null), cast to its types."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names
            else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


class _Staged:
    """Parquet writers for the staged parts of one raw file, keyed by partition."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        self.folder = folder
        self.schema = schema
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.row_writers: dict[str, pq.ParquetWriter] = {}

    def path(self, part: str) -> Path:
        return self.folder / f"{part}.parquet.tmp"

    def rows_path(self, part: str) -> Path:
        return self.folder / f"{part}.rows.tmp"

    def write(self, part: str, frame: pl.DataFrame) -> None:
        if part not in self.writers:
            self.writers[part] = pq.ParquetWriter(self.path(part), self.schema, compression=COMPRESSION)
            self.row_writers[part] = pq.ParquetWriter(self.rows_path(part), pa.schema([(_ROW, pa.int64())]))
        self.writers[part].write_table(_conform(frame.drop(_ROW).to_arrow(), self.schema))
        self.row_writers[part].write_table(frame.select(pl.col(_ROW).cast(pl.Int64)).to_arrow())

    def close(self) -> None:
        for w in (*self.writers.values(), *self.row_writers.values()):
            w.close()


def _partition_dir(ws: Workspace, spec: RawFile, part: str) -> Path:
    table = ws.lake_table(spec.stem)
    return table / f"{PARTITION_PREFIX}{part}" if spec.time_column else table


def _quarantine_schema(columns: list[str]) -> pa.Schema:
    return pa.schema([*[(c, pa.string()) for c in columns], (_REASON, pa.string()),
                      ("source", pa.string()), ("source_row", pa.int64()),
                      ("ingested_at", pa.timestamp("ms", tz="UTC"))])


class _Quarantine:
    """The staged quarantine of one raw file (original values as text, reason, where, when)."""

    def __init__(self, ws: Workspace, source: _Source, staging: Path, commit: _Commit) -> None:
        self.commit = commit
        self.final = ws.quarantine_table(source.spec.stem)
        self.source = str(source.path.resolve())
        # CSV sources also keep whole lines that could not be split into fields
        self.columns = list(source.columns) + ([RAW_LINE] if source.spec.fmt == "csv" else [])
        self.schema = _quarantine_schema(self.columns)
        self.path = staging / "quarantine.parquet.tmp"
        self.writer: pq.ParquetWriter | None = None
        self.ingested_at = self._ingested_at(source.path)

    def _ingested_at(self, raw: Path) -> datetime:
        # Rows of a file that has not changed since it was quarantined keep their first
        # ingested_at, so ingesting the same folder twice leaves the quarantine as it was.
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the column holds ms
        if not self.final.exists():
            return now
        first = (pl.scan_parquet(self.final).filter(pl.col("source") == self.source)
                 .select(pl.col("ingested_at").min()).collect().item())
        if first is None:
            return now
        modified = datetime.fromtimestamp(raw.stat().st_mtime, UTC)
        return first if modified <= first else now

    def write(self, bad: pl.DataFrame) -> None:
        if bad.height == 0:
            return
        frame = bad.with_columns(pl.lit(self.source).alias("source"),
                                 pl.lit(self.ingested_at).dt.cast_time_unit("ms")
                                 .dt.replace_time_zone("UTC").alias("ingested_at"))
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema, compression=COMPRESSION)
        self.writer.write_table(_conform(frame.to_arrow(), self.schema))

    def finish(self, batch_rows: int) -> None:
        """Replace this file's earlier quarantine rows with this run's; keep other files' rows."""
        if self.writer is not None:
            self.writer.close()
        has_new = self.writer is not None
        keep = 0
        if self.final.exists():
            keep = (pl.scan_parquet(self.final).select((pl.col("source") != self.source).sum())
                    .collect().item())
        if keep == 0:
            # nothing of other files to keep: this run's file is the quarantine (or there is none)
            if has_new:
                self.commit.stage(self.path, self.final)
            elif self.final.exists():
                self.commit.remove(self.final)
            return
        old = pq.ParquetFile(self.final)
        if keep == old.metadata.num_rows and not has_new:
            return
        schema = _merge_schemas(self.schema, old.schema_arrow)
        tmp = self.path.with_suffix(".merge.tmp")
        with pq.ParquetWriter(tmp, schema, compression=COMPRESSION) as out:
            if has_new:
                for batch in pq.ParquetFile(self.path).iter_batches(batch_size=batch_rows):
                    out.write_table(_conform(pa.Table.from_batches([batch]), schema))
            for batch in old.iter_batches(batch_size=batch_rows):
                kept = pl.from_arrow(batch).filter(pl.col("source") != self.source)
                if kept.height:
                    out.write_table(_conform(kept.to_arrow(), schema))
        self.commit.stage(tmp, self.final)


def _merge_schemas(new: pa.Schema, old: pa.Schema) -> pa.Schema:
    """New schema plus any value column only the old one has (kept as text), meta columns last."""
    tail = [_REASON, "source", "source_row", "ingested_at"]
    values = [f for f in new if f.name not in tail]
    values += [pa.field(f.name, pa.string()) for f in old if f.name not in new.names]
    return pa.schema([*values, *[new.field(n) for n in tail]])


# ---------------------------------------------------------------------------------------------
# Ingest


JOURNAL = ".ingest-commit.json"
STAGING = ".ingest-staging"


class _Commit:
    """The renames that turn a run's staged files into the lake, applied only once all are staged.

    `stage(staged, final)` plans `final` to be replaced by `staged`; `remove(final)` plans its
    removal. Until `apply`, the lake is untouched; `files(table)` is the table as the run will
    leave it, for foreign-key checks of later files.
    """

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.moves: dict[Path, Path] = {}  # final -> staged
        self.removals: set[Path] = set()

    def stage(self, staged: Path, final: Path) -> None:
        self.moves[final] = staged
        self.removals.discard(final)

    def remove(self, final: Path) -> None:
        self.moves.pop(final, None)
        self.removals.add(final)

    def files(self, table: Path) -> list[Path]:
        lake = set(table.rglob("*.parquet")) if table.exists() else set()
        planned = {f for f in self.moves if f.is_relative_to(table)}
        current = (lake | planned) - self.removals
        return sorted(self.moves.get(f, f) for f in current)

    def apply(self) -> None:
        """Write the journal, then rename; `complete_interrupted_commit` replays it after a kill."""
        root = self.ws.root
        # paths relative to the workspace: a workspace copied mid-commit completes in the copy
        moves = [[str(s.relative_to(root)), str(f.relative_to(root))] for f, s in self.moves.items()]
        journal = {"moves": moves, "removals": [str(f.relative_to(root)) for f in sorted(self.removals)]}
        write_json_atomic(journal, root / JOURNAL)
        kill_point("ingest.journal_written")
        _replay(self.ws, journal)


def _replay(ws: Workspace, journal: dict) -> int:
    """Apply a commit journal (idempotent: a move whose staged file is gone is done); the count."""
    done, folders = 0, set()
    for staged_rel, final_rel in journal["moves"]:
        staged, final = ws.root / staged_rel, ws.root / final_rel
        if staged.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            folders.add(final.parent)
            done += 1
            kill_point("ingest.rename")
    for final_rel in journal["removals"]:
        (ws.root / final_rel).unlink(missing_ok=True)
    for folder in folders:
        fsync_path(folder)
    (ws.root / JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(ws.root / STAGING, ignore_errors=True)
    return done


def complete_interrupted_commit(ws: Workspace) -> int:
    """Finish the lake renames of an ingest killed mid-commit (its journal); returns how many."""
    path = ws.root / JOURNAL
    if not path.exists():
        return 0
    return _replay(ws, json.loads(path.read_text()))


def _parent_keys(ws: Workspace, spec: RawFile, commit: _Commit) -> dict[str, pl.Series]:
    keys: dict[str, pl.Series] = {}
    for fk in spec.foreign_keys:
        files = commit.files(ws.lake_table(fk.parent))
        if not files:
            keys[fk.column] = pl.Series(fk.parent_column, [], pl.Int64)
            continue
        keys[fk.column] = (pl.scan_parquet(files).select(pl.col(fk.parent_column).unique())
                           .collect().to_series().drop_nulls())
    return keys


def _ingest_file(source: _Source, ws: Workspace, cfg: IngestConfig, staging: Path,
                 progress: Progress, commit: _Commit) -> FileCounts:
    spec = source.spec
    counts = FileCounts()
    folder = staging / spec.stem
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    parents = _parent_keys(ws, spec, commit)
    staged = _Staged(folder, _lake_schema(source))
    quarantine = _Quarantine(ws, source, folder, commit)
    total = pq.ParquetFile(source.path).metadata.num_rows if spec.fmt == "parquet" else None
    task = progress.add_task(spec.filename, total=total)
    batch_rows = batch_rows_for(source, cfg)
    offset = 0
    malformed: list[tuple[str, str]] = []

    def flush_malformed() -> None:
        if malformed:
            lines, reasons = zip(*malformed, strict=True)
            quarantine.write(pl.DataFrame({RAW_LINE: list(lines), _REASON: list(reasons),
                                           "source_row": pl.Series([None] * len(lines), dtype=pl.Int64)}))
            counts.read += len(lines)
            counts.quarantined += len(lines)
            counts.reasons.update(reasons)
            malformed.clear()

    try:
        for batch in _batches(source, batch_rows, malformed):
            flush_malformed()
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            rows = pl.int_range(offset, offset + frame.height, dtype=pl.Int64)
            frame = frame.with_columns(rows.alias(_ROW))
            offset += frame.height
            good, bad = _check(frame, source, parents)
            counts.read += frame.height
            counts.quarantined += bad.height
            if bad.height:
                counts.reasons.update(dict(bad.get_column(_REASON).value_counts().iter_rows()))
            quarantine.write(bad)
            if spec.time_column:
                good = good.with_columns(pl.col(spec.time_column).dt.date().alias(_DAY))
                for (day,), part in good.partition_by(_DAY, as_dict=True, maintain_order=True).items():
                    staged.write(day.isoformat(), part.drop(_DAY))
            elif good.height:
                staged.write("all", good)
            progress.advance(task, frame.height)
        flush_malformed()
    finally:
        staged.close()
    parts = sorted(staged.writers)
    if not spec.time_column and not parts:
        # a table with no accepted rows still exists in the lake, so readers find its schema
        staged.write("all", pl.DataFrame(schema={_ROW: pl.Int64}))
        staged.close()
        parts = ["all"]
    for part in parts:
        dups = _reconcile(part, source, ws, staged, quarantine, batch_rows, commit)
        counts.quarantined += dups
        if dups:
            counts.reasons[_duplicate_reason(spec)] += dups
    quarantine.finish(batch_rows)
    counts.accepted = counts.read - counts.quarantined
    progress.update(task, total=counts.read, completed=counts.read)
    return counts


def _duplicate_reason(spec: RawFile) -> str:
    return f"duplicate key ({', '.join(spec.key)})"


def _reconcile(part: str, source: _Source, ws: Workspace, staged: _Staged, quarantine: _Quarantine,
               batch_rows: int, commit: _Commit) -> int:
    """Stage one partition as the lake will hold it; returns the rows quarantined as duplicates."""
    spec = source.spec
    key = list(spec.key)
    new_path = staged.path(part)
    new_keys = pl.read_parquet(new_path, columns=key)
    first = new_keys.select(pl.struct(key).is_first_distinct().alias("first")).get_column("first")
    dups = int((~first).sum())
    final_dir = _partition_dir(ws, spec, part)
    final = final_dir / PART_NAME
    old_keep: pl.Series | None = None
    old_schema: pa.Schema | None = None
    if final.exists():
        old_file = pq.ParquetFile(final)
        old_schema = old_file.schema_arrow
        if all(k in old_schema.names for k in key):
            old_keys = pl.read_parquet(final, columns=key).with_row_index("__i")
            unique_new = new_keys.unique()
            old_keep = old_keys.join(unique_new, on=key, how="anti").get_column("__i")
        else:  # not a lake file of this contract: replaced whole
            old_keep = pl.Series("__i", [], pl.UInt32)
    if dups == 0 and (old_keep is None or old_keep.len() == 0):
        commit.stage(new_path, final)
        return 0

    schema = staged.schema
    if old_schema is not None and old_keep is not None and old_keep.len():
        extra = [f for f in old_schema if f.name not in schema.names and f.name in
                 {c.name for c in spec.extra_optional}]
        schema = pa.schema([*schema, *extra])
    tmp = staged.folder / f"{part}.merged.tmp"
    rows = pl.read_parquet(staged.rows_path(part)).get_column(_ROW)
    with pq.ParquetWriter(tmp, schema, compression=COMPRESSION) as out:
        offset = 0
        for batch in pq.ParquetFile(new_path).iter_batches(batch_size=batch_rows):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            mask = first.slice(offset, frame.height)
            out.write_table(_conform(frame.filter(mask).to_arrow(), schema))
            if not bool(mask.all()):
                dup = frame.filter(~mask)
                quarantine.write(dup.select(
                    *[_as_text(n, dup.schema[n]).alias(n) for n in source.columns],
                    pl.lit(_duplicate_reason(spec)).alias(_REASON),
                    rows.slice(offset, frame.height).filter(~mask).alias("source_row")))
            offset += frame.height
        if old_keep is not None and old_keep.len():
            keep = old_keep.cast(pl.Int64)
            offset = 0
            for batch in pq.ParquetFile(final).iter_batches(batch_size=batch_rows):
                idx = keep.filter((keep >= offset) & (keep < offset + batch.num_rows)) - offset
                if idx.len():
                    out.write_table(_conform(pa.Table.from_batches([batch]).take(idx.to_arrow()), schema))
                offset += batch.num_rows
    commit.stage(tmp, final)
    return dups


def ingest(src: Path, ws: Workspace, cfg: IngestConfig, console: Console | None = None) -> IngestReport:
    """Validate the KuaiLive-M3-layout folder `src` and write its rows into `ws`'s lake.

    Bad rows go to `<ws>/quarantine/<stem>.parquet` with a `reason`; read = accepted +
    quarantined per file. All or nothing: raises ContractError, with lake and quarantine as they
    were, when a required file or column is missing or a file cannot be read. Re-ingesting the
    same folder leaves lake and quarantine as they were.
    """
    started = time.perf_counter()
    src = Path(src)
    complete_interrupted_commit(ws)  # a run killed mid-rename is finished before anything else
    sources, skipped = check_layout(src)
    report = IngestReport(src=src, skipped=skipped)
    staging = ws.root / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # leftovers of a run killed before its commit
    staging.mkdir(parents=True)
    commit = _Commit(ws)
    console = console or Console(stderr=True)
    columns = (TextColumn("{task.description:<24}"), BarColumn(), TextColumn("{task.completed:>12,} rows"),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            for source in sources:
                report.files[source.spec.stem] = _read_or_refuse(source, ws, cfg, staging, progress, commit)
                kill_point("ingest.file_staged")
        commit.apply()
        copy_latent(src, ws)  # a synthetic world's truth rides along; it is not contract data
    finally:
        if not (ws.root / JOURNAL).exists():  # a journal still to replay keeps its staged files
            shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


# What a reader raises on a file it cannot read: a corrupt or truncated body, a bad encoding, a
# CSV the parser cannot split. Exceptions of other kinds are bugs and keep their traceback.
_UNREADABLE = (OSError, EOFError, ValueError, pa.ArrowException, pl.exceptions.PolarsError)


def _read_or_refuse(source: _Source, ws: Workspace, cfg: IngestConfig, staging: Path,
                    progress: Progress, commit: _Commit) -> FileCounts:
    """Stage one raw file, or refuse the whole run with a message naming the file and the cause."""
    try:
        return _ingest_file(source, ws, cfg, staging, progress, commit)
    except ContractError as err:
        raise ContractError(f"{err}\nNothing was written: the lake and quarantine are as before.") from None
    except _UNREADABLE as err:
        cause = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ContractError(
            f"{source.spec.filename} cannot be read ({type(err).__name__}: {cause[:300]}); it is "
            "corrupt, truncated or not in the contract's format: replace it with a good copy "
            "(re-export or re-download it) and rerun. Nothing was written: the lake and "
            "quarantine are as before.") from None
