import json
import os
import signal
import subprocess
import sys
import textwrap

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rgcd.atomic import (
    atomic_path,
    remove_stale_temps,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)


def test_writes_land_whole_and_leave_no_temp(tmp_path):
    write_bytes_atomic(b"abc", tmp_path / "a" / "x.bin")
    write_json_atomic({"k": [1, 2]}, tmp_path / "x.json")
    write_parquet_atomic(pl.DataFrame({"a": [1, 2]}), tmp_path / "p.parquet")
    write_parquet_atomic(pa.table({"b": ["x"]}), tmp_path / "q.parquet")
    assert (tmp_path / "a" / "x.bin").read_bytes() == b"abc"
    assert json.loads((tmp_path / "x.json").read_text()) == {"k": [1, 2]}
    assert pl.read_parquet(tmp_path / "p.parquet")["a"].to_list() == [1, 2]
    assert pq.read_table(tmp_path / "q.parquet").column("b").to_pylist() == ["x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "p.parquet", "q.parquet", "x.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic({"v": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_folder_replaces_a_folder(tmp_path):
    target = tmp_path / "model"
    for version in ("old", "new"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "w.txt").write_text(version)
    assert (target / "w.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_killed_writer_leaves_the_old_file_and_a_temp_that_is_cleaned(tmp_path):
    target = tmp_path / "big.bin"
    write_bytes_atomic(b"old", target)
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from rgcd.atomic import atomic_path
        with atomic_path(Path({str(target)!r})) as tmp:
            tmp.write_bytes(b"new-but-partial")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd())
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old"
    assert remove_stale_temps(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]


def test_write_parquet_atomic_refuses_other_types(tmp_path):
    with pytest.raises(TypeError):
        write_parquet_atomic({"a": [1]}, tmp_path / "x.parquet")
    assert list(tmp_path.iterdir()) == []
