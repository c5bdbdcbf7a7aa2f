"""The marts folder is a pointer switched in one rename: a build never mixes with another."""

import os

import duckdb
import polars as pl

from rgcd.config import Workspace
from rgcd.warehouse import _new_build_dir, switch_marts


def test_a_build_is_switched_in_whole_and_keeps_the_marts_it_did_not_write(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    pl.DataFrame({"v": [1]}).write_parquet(ws.marts / "a.parquet")  # a plain folder, as before builds
    pl.DataFrame({"v": [1]}).write_parquet(ws.marts / "b.parquet")
    first = _new_build_dir(ws)
    pl.DataFrame({"v": [2]}).write_parquet(first / "a.parquet")  # a --select build of `a` only
    con = duckdb.connect(str(ws.warehouse))
    con.execute(f"CREATE VIEW a AS SELECT * FROM read_parquet('{first}/a.parquet')")
    con.close()
    assert pl.read_parquet(ws.marts / "a.parquet")["v"].to_list() == [1]  # unseen until the switch
    switch_marts(ws, first)
    assert ws.marts.is_symlink() and not os.path.isabs(os.readlink(ws.marts))  # a copy keeps its own
    assert pl.read_parquet(ws.marts / "a.parquet")["v"].to_list() == [2]
    assert pl.read_parquet(ws.marts / "b.parquet")["v"].to_list() == [1]
    con = duckdb.connect(str(ws.warehouse))
    sql = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'a'").fetchone()[0]
    assert f"{ws.marts}/a.parquet" in sql and "marts.builds" not in sql  # follows the pointer
    con.close()

    killed = _new_build_dir(ws)  # a build that never switched ...
    pl.DataFrame({"v": [3]}).write_parquet(killed / "a.parquet")
    assert pl.read_parquet(ws.marts / "a.parquet")["v"].to_list() == [2]
    second = _new_build_dir(ws)  # ... is removed by the next one; the live build stays
    assert not killed.exists() and first.exists()
    pl.DataFrame({"v": [4]}).write_parquet(second / "a.parquet")
    switch_marts(ws, second)
    assert pl.read_parquet(ws.marts / "a.parquet")["v"].to_list() == [4]
    assert pl.read_parquet(ws.marts / "b.parquet")["v"].to_list() == [1]
    assert first.exists()  # the previous build stays for readers that opened it
