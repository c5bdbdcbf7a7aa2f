"""A workspace whose path has an apostrophe and a space builds (issue 25).

Before: the path was pasted into dbt's SQL between single quotes ("unterminated string literal",
then a traceback). Now every path dbt puts into SQL goes through the `sql_string` macro (single
quotes doubled), and the views re-pointed after a build keep the quoting. The lake is the tiny
world of tests/dbt (written in code, with covers: the optional-column probe runs too).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb
import polars as pl

from rgcd.config import Settings, Workspace
from rgcd.warehouse import build

_spec = importlib.util.spec_from_file_location(
    "dbt_tiny_world", Path(__file__).resolve().parents[1] / "dbt" / "conftest.py")
tiny_world = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_world)


def test_a_workspace_path_with_an_apostrophe_and_a_space_builds(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "it's a 'ws'").ensure()
    tiny_world.write_tiny_lake(ws.lake, n_days=2, covers=True)
    report = build(ws, Settings(), select="+item_content")
    assert report.success and set(report.marts) == {"item_content"}
    items = pl.read_parquet(ws.marts / "item_content.parquet")
    assert items.height > 0 and 0 < items["cover_path"].null_count() < items.height
    # the views dbt left in the warehouse read the marts through the workspace's quoted path
    con = duckdb.connect(str(ws.warehouse), read_only=True)
    try:
        views = dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
        assert "it''s a ''ws''/marts/item_content.parquet" in views["item_content"], views["item_content"]
        assert con.execute("SELECT count(*) FROM item_content").fetchone()[0] == items.height
    finally:
        con.close()
