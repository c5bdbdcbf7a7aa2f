"""Ingest lands every file of a run or none: an unreadable file (corrupt body, another delimiter)
stops the run with exit 2 naming the file and the cause, and the lake is byte-unchanged."""

from __future__ import annotations

import json

import polars as pl
import pyarrow.parquet as pq
from click.testing import CliRunner
from test_ingest import DAY2, _lake_bytes, _plays, _world

from rgcd.cli import cli
from rgcd.config import IngestConfig, Workspace
from rgcd.transforms.ingest import JOURNAL, complete_interrupted_commit, ingest
from rgcd.transforms.raw_io import write_raw


def _ingest(raw, ws: Workspace):
    res = CliRunner().invoke(cli, ["--workspace", str(ws.root), "ingest", str(raw)])
    return res.exit_code, " ".join(res.output.split())  # rich wraps long lines


def _corrupt_body(path) -> None:
    """Flip bytes inside the first column chunk's data; the footer stays intact and readable."""
    meta = pq.ParquetFile(path).metadata
    chunk = meta.row_group(0).column(0)
    start = chunk.data_page_offset + chunk.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    for i in range(start, min(start + 16, len(data) - 8)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupt_parquet_body_stops_the_run_and_lands_no_file_of_it(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    ingest(_world(tmp_path / "day1"), ws, IngestConfig())
    before = _lake_bytes(ws)
    later = _world(tmp_path / "day2", day=DAY2)
    write_raw(later, "user_id_set", pl.DataFrame({"user_id": [1, 2, 3, 4, 5, 6]}))  # new users ...
    big = _plays(DAY2, [1, 2, 3, 5, 6], [10, 11, 12] * 400)  # ... and their plays, corrupt
    big.write_parquet(later / "photo_play.parquet", compression="zstd", row_group_size=len(big))
    _corrupt_body(later / "photo_play.parquet")
    assert pq.ParquetFile(later / "photo_play.parquet").metadata.num_rows == len(big)  # footer fine
    code, said = _ingest(later, ws)
    assert code == 2, said
    assert "photo_play.parquet cannot be read" in said and "Nothing was written" in said
    assert "Traceback" not in said
    assert _lake_bytes(ws) == before  # user_id_set was staged before photo_play and did not land
    assert not (ws.root / ".ingest-staging").exists() and not (ws.root / JOURNAL).exists()


def test_a_semicolon_csv_is_named_as_such(tmp_path):
    raw = _world(tmp_path / "raw")
    path = raw / "live_interaction.csv"
    path.write_text(path.read_text().replace(",", ";"))
    code, said = _ingest(raw, Workspace(tmp_path / "ws"))
    assert code == 2, said
    assert "live_interaction.csv" in said and "read as one column" in said and "semicolon-delimited" in said
    assert not [p for p in (tmp_path / "ws" / "lake").rglob("*") if p.is_file()]


def test_a_commit_journal_left_by_a_kill_is_completed(tmp_path):
    # What a kill between two renames leaves: the journal and the staged files not moved yet.
    ws = Workspace(tmp_path / "ws").ensure()
    staged = ws.root / ".ingest-staging" / "user_id_set" / "all.parquet.tmp"
    staged.parent.mkdir(parents=True)
    pl.DataFrame({"user_id": [7]}).write_parquet(staged)
    final = ws.lake_table("user_id_set") / "part-0.parquet"
    move = [str(staged.relative_to(ws.root)), str(final.relative_to(ws.root))]
    (ws.root / JOURNAL).write_text(json.dumps({"moves": [move], "removals": []}))
    assert complete_interrupted_commit(ws) == 1
    assert pl.read_parquet(final)["user_id"].to_list() == [7]
    assert not (ws.root / JOURNAL).exists() and not staged.parent.parent.exists()
    assert complete_interrupted_commit(ws) == 0
