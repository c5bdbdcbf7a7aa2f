"""The analytics engineer's whole path with the real dbt project: a column added to a tagged mart's
SQL and YAML -> dbt build -> `rgcd features sync` -> the column in a training frame and online."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from rgcd.cli import cli
from rgcd.config import Settings, Workspace
from rgcd.featurestore import store as fs
from rgcd.warehouse import DBT_PROJECT, run_dbt

TESTS = Path(__file__).resolve().parents[1]


def _tiny_lake_writer():
    # The dbt tests' tiny lake (tests/dbt/conftest.py), loaded under its own name.
    spec = importlib.util.spec_from_file_location("dbt_tiny_lake", TESTS / "dbt" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_tiny_lake


@pytest.mark.slow
def test_a_column_added_in_dbt_reaches_frames_and_online_features(tmp_path):
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    sql = project / "models/marts/live_schedule.sql"
    sql.write_text(sql.read_text().replace(
        "    end_timestamp,\n",
        "    end_timestamp,\n    epoch_ms(end_timestamp) - epoch_ms(start_timestamp) as on_air_ms,\n"))
    yml = project / "models/marts/live_schedule.yml"
    yml.write_text(yml.read_text().replace(
        "      - name: event_timestamp\n",
        "      - name: on_air_ms\n        description: Broadcast length in ms (NULL while on air).\n"
        "        data_type: bigint\n      - name: event_timestamp\n"))
    repo = tmp_path / "feature_repo"
    shutil.copytree(fs.REPO_DIR, repo, ignore=shutil.ignore_patterns("__pycache__"))

    ws = Workspace(tmp_path / "ws").ensure()
    _tiny_lake_writer()(ws.lake, n_days=2)
    run_dbt(ws, Settings(), "build", select="+live_schedule", project=project)
    res = CliRunner().invoke(cli, ["-w", str(ws.root), "features", "sync", "--repo", str(repo),
                                   "--manifest", str(fs.dbt_manifest(ws))])
    assert res.exit_code == 0, res.output
    assert "Field(name='on_air_ms', dtype=Int64" in (repo / fs.GENERATED).read_text()

    rooms = pl.read_parquet(ws.marts / "live_schedule.parquet").filter(pl.col("end_timestamp").is_not_null())
    expected = rooms.select(((pl.col("end_timestamp") - pl.col("start_timestamp")).dt.total_milliseconds())
                            .alias("ms"))["ms"].to_list()
    assert len(expected) >= 5 and all(ms > 0 for ms in expected)
    store = fs.feature_store(ws, Settings())
    entities = rooms.select("item_id", pl.col("end_timestamp").alias("event_timestamp"))
    got = fs.frame(store, entities, service=None, features=["live_schedule:on_air_ms"])
    assert got["live_schedule__on_air_ms"].to_list() == expected
    # before its row exists (start - 1 s) a room has no value
    before = rooms.select("item_id",
                          (pl.col("start_timestamp") - pl.duration(seconds=1)).alias("event_timestamp"))
    early = fs.frame(store, before, service=None, features=["live_schedule:on_air_ms"])
    assert early["live_schedule__on_air_ms"].null_count() == rooms.height

    fs.materialize(store)
    online = store.get_online_features(features=["live_schedule:on_air_ms"],
                                       entity_rows=[{"item_id": i} for i in rooms["item_id"]]).to_dict()
    assert online["on_air_ms"] == expected
