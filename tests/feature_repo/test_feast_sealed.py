"""A workspace copied with `cp -r` or moved with `mv` is sealed: its Feast registry names the old
workspace, so every command refuses it (exit 2, says to apply) and `apply` rebuilds it; the
original's registry and online store stay byte-equal and keep serving."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from click.testing import CliRunner
from feast_marts import write_mart

from rgcd.cli import cli
from rgcd.config import Settings, Workspace
from rgcd.featurestore import store as fs

T = datetime(2025, 5, 10, tzinfo=UTC)


def _world(root) -> Workspace:
    ws = Workspace(root).ensure()
    write_mart(ws.marts, "user_features_daily", {
        "user_id": [1, 2], "sv_plays_7d": [3, 8], "is_live_cold_start": [True, False],
        "event_timestamp": [T, T], "created_timestamp": [T, T]})
    times = {"event_timestamp": [T], "created_timestamp": [T]}
    for mart in ("item_content", "live_schedule"):
        write_mart(ws.marts, mart, {"item_id": ["live:1"], **times})
    write_mart(ws.marts, "behaviour_pairs", {"pair_id": ["p"], **times})
    fs.apply(ws, Settings())
    fs.materialize(fs.feature_store(ws, Settings()))
    return ws


def _bytes(ws: Workspace) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(ws.feast.iterdir()) if p.is_file()}


def _plays(ws: Workspace) -> list:
    store = fs.feature_store(ws, Settings())
    got = fs.online_features(store, "ranker", {"user_id": [1, 2], "item_id": ["live:1"] * 2})
    return got["user_features_daily__sv_plays_7d"].to_list()


@pytest.fixture
def original(tmp_path) -> Workspace:
    return _world(tmp_path / "original")


def test_a_fresh_workspace_is_sealed(original):
    assert fs.foreign_paths(original) == []


@pytest.mark.parametrize("how", ["copy", "move"])
def test_a_copied_or_moved_workspace_refuses_then_rebuilds_and_spares_the_original(original, tmp_path, how):
    before = _bytes(original)
    if how == "copy":
        moved = Workspace(shutil.copytree(original.root, tmp_path / "copy"))
    else:
        shutil.copytree(original.root, tmp_path / "keep")  # the original's files, to compare after
        moved = Workspace(shutil.move(original.root, tmp_path / "moved"))
    assert fs.foreign_paths(moved), "the copied registry names the old workspace"
    entities = tmp_path / "entities.parquet"
    pl.DataFrame({"user_id": [1], "event_timestamp": [T + timedelta(hours=1)]}).write_parquet(entities)
    runner = CliRunner()
    for args in (["features", "frame", str(entities), "--feature", "user_features_daily:sv_plays_7d",
                  "--out", str(tmp_path / "f.parquet")], ["features", "materialize"],
                 ["retrieve", "--user", "1"]):
        res = runner.invoke(cli, ["-w", str(moved.root), *args])
        said = " ".join(res.output.split())  # rich wraps long lines
        assert res.exit_code == 2, said
        assert "belongs to another workspace" in said and "features apply" in said
        assert "features materialize" in said  # apply empties the online store: both are needed
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    with pytest.raises(fs.FeatureStoreError, match="features apply"):
        fs.serve(moved, Settings(), port=0)

    # apply rebuilds the copy's registry; materialize and frame then work on the copy's own files
    # (the copy's marts are changed so that reading the original's would show)
    write_mart(moved.marts, "user_features_daily", {
        "user_id": [1, 2], "sv_plays_7d": [30, 80], "is_live_cold_start": [True, False],
        "event_timestamp": [T, T], "created_timestamp": [T, T]})
    res = runner.invoke(cli, ["-w", str(moved.root), "features", "apply"])
    said = " ".join(res.output.split())
    assert res.exit_code == 0 and "rebuilt the registry" in said and "features materialize" in said, said
    assert fs.foreign_paths(moved) == []
    assert runner.invoke(cli, ["-w", str(moved.root), "features", "materialize"]).exit_code == 0
    res = runner.invoke(cli, ["-w", str(moved.root), "features", "frame", str(entities), "--feature",
                              "user_features_daily:sv_plays_7d", "--out", str(tmp_path / "f.parquet")])
    assert res.exit_code == 0, res.output
    assert pl.read_parquet(tmp_path / "f.parquet")["user_features_daily__sv_plays_7d"].to_list() == [30]
    assert _plays(moved) == [30, 80]

    if how == "copy":  # the original: byte-equal, still serving its own values
        assert _bytes(original) == before
        assert _plays(original) == [3, 8]
    else:  # nothing was written where the moved workspace used to be
        assert not original.root.exists()
