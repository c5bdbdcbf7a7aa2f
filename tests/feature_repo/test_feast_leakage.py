"""Point-in-time correctness of training frames on a crafted world: no value from the future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from click.testing import CliRunner
from feast_marts import contract_repo, write_feature_data, write_mart

from rgcd.cli import cli
from rgcd.config import Settings, Workspace
from rgcd.featurestore import store as fs

T = datetime(2025, 5, 10, tzinfo=UTC)
S = timedelta(seconds=1)
D = timedelta(days=1)
BUILD = datetime(2025, 6, 1, tzinfo=UTC)  # when dbt built the marts: after every request time


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws")).ensure()
    # user 1 changes at T (5 -> 7); user 2's only snapshot is at T - 3d (TTL 2d).
    # user 3 has two rows for the same snapshot time, the second built later (a tie on event time).
    write_mart(ws.marts, "user_features_daily", {
        "user_id": [1, 1, 2, 3, 3], "event_timestamp": [T - D, T, T - 3 * D, T, T],
        "created_timestamp": [BUILD] * 4 + [BUILD + D],
        "sv_plays_7d": [5, 7, 3, 1, 2], "top_category_1": ["food", "games", "music", "a", "b"]})
    write_mart(ws.marts, "item_content", {
        "item_id": ["photo:1", "photo:2"], "domain": ["photo", "photo"], "title": ["a", "b"],
        "event_timestamp": [T - 10 * D] * 2, "created_timestamp": [BUILD] * 2})
    at_t = {"event_timestamp": [T], "created_timestamp": [T]}
    write_mart(ws.marts, "live_schedule", {"item_id": ["live:9"], **at_t})
    write_mart(ws.marts, "behaviour_pairs", {"pair_id": ["p"], **at_t})
    # photo:1's reasoning was written at T - 5d ("old") and restated at T + 1h ("new", same event time);
    # photo:2's reasoning exists only since T + 1h.
    write_feature_data(ws.feature_data, "item_reasoning", {
        "item_id": ["photo:1", "photo:1", "photo:2"], "key_subject": ["old", "new", "late"],
        "event_timestamp": [T - 5 * D] * 3,
        "created_timestamp": [T - 5 * D, T + timedelta(hours=1), T + timedelta(hours=1)]})
    write_feature_data(ws.feature_data, "item_embeddings", {
        "item_id": ["photo:1"], "transferable": [[1.0, 2.0]], "residual": [[0.5]], "model_version": ["m1"],
        "event_timestamp": [T - 5 * D], "created_timestamp": [T - 5 * D]})
    fs.apply(ws, Settings(), contract_repo(tmp_path_factory.mktemp("repo") / "feature_repo"))
    assert fs.feature_store(ws, Settings()).get_feature_view("user_features_daily").ttl == 2 * D
    return ws


def _settings(offline_store: str) -> Settings:
    return Settings.model_validate({"features": {"offline_store": offline_store}})


@pytest.fixture(params=["asof", "duckdb"], ids=["asof_store", "stock_store"])
def store(request, world):
    """The same registry through each offline store: the ASOF plugin (default) and Feast's own."""
    got = fs.feature_store(world, _settings(request.param))
    assert type(got._get_provider().offline_store).__name__ == {
        "asof": "AsofOfflineStore", "duckdb": "DuckDBOfflineStore"}[request.param]
    return got


def _frame(store, users, items, times) -> pl.DataFrame:
    entities = pl.DataFrame({"user_id": users, "item_id": items, "event_timestamp": times},
                            schema_overrides={"event_timestamp": pl.Datetime("us", "UTC")})
    return fs.frame(store, entities, service="training")


def test_a_feature_changing_at_t_is_old_before_and_new_at_t(store):
    got = _frame(store, [1, 1, 1], ["photo:1"] * 3, [T - S, T, T + S])
    assert got["user_features_daily__sv_plays_7d"].to_list() == [5, 7, 7]
    assert got["user_features_daily__top_category_1"].to_list() == ["food", "games", "games"]


def test_ttl_expiry_gives_null(store):
    # user 2's snapshot at T - 3d lives for 2 days: visible up to T - 1d inclusive.
    got = _frame(store, [2, 2, 2], ["photo:1"] * 3, [T - 3 * D - S, T - D, T - D + S])
    assert got["user_features_daily__sv_plays_7d"].to_list() == [None, 3, None]


def test_reasoning_is_visible_from_its_evidence_time_and_a_regeneration_wins_ties(store):
    # Reasoning is stamped with its evidence time (docs/features.md): a backfill written at
    # T + 1h about evidence of T - 5d is seen by a frame at T, never by one before T - 5d.
    got = _frame(store, [1] * 5, ["photo:1", "photo:1", "photo:2", "photo:2", "photo:1"],
                 [T, T + 2 * timedelta(hours=1), T, T + 2 * timedelta(hours=1), T - 5 * D - S])
    assert got["item_reasoning__key_subject"].to_list() == ["new", "new", "late", "late", None]


def test_marts_are_not_filtered_by_their_build_time(store):
    # dbt stamps created_timestamp at build time; only views tagged regenerated are cut by it.
    got = _frame(store, [1], ["photo:2"], [T])
    assert got["item_content__title"].to_list() == ["b"]


def test_frame_keeps_row_order_types_and_unknown_entities(store):
    times = [T + S, T - S, T, T]
    got = _frame(store, [1, 1, 99, 1], ["photo:1", "photo:1", "photo:1", "nope"], times)
    assert got.height == 4
    assert got["user_id"].to_list() == [1, 1, 99, 1]
    assert got["event_timestamp"].to_list() == times
    assert got["user_features_daily__sv_plays_7d"].to_list() == [7, 5, None, 7]
    assert got["item_embeddings__transferable"].to_list()[:3] == [[1.0, 2.0]] * 3
    assert got["item_embeddings__transferable"].dtype == pl.List(pl.Float32)
    assert got["item_embeddings__model_version"].to_list() == ["m1", "m1", "m1", None]


def test_frame_command_writes_the_same_frame(world, tmp_path):
    ws = world
    entities = pl.DataFrame({"user_id": [1, 2], "item_id": ["photo:1", "photo:2"],
                             "event_timestamp": [T - S, T - D]})  # naive times are UTC
    entities.write_parquet(tmp_path / "entities.parquet")
    res = CliRunner().invoke(cli, ["-w", str(ws.root), "features", "frame",
                                   str(tmp_path / "entities.parquet"), "--service", "training",
                                   "--out", str(tmp_path / "frame.parquet")])
    assert res.exit_code == 0, res.output
    written = pl.read_parquet(tmp_path / "frame.parquet")
    assert written["user_features_daily__sv_plays_7d"].to_list() == [5, 3]
    stock = fs.feature_store(ws, _settings("duckdb"))  # the command runs the default, ASOF store
    assert written.equals(fs.frame(stock, entities, service="training"))


def test_frame_errors_say_what_to_do(store):
    with pytest.raises(fs.FeatureStoreError, match="join key"):
        fs.frame(store, pl.DataFrame({"user_id": [1], "event_timestamp": [T]}), service="training")
    with pytest.raises(fs.FeatureStoreError, match="no data yet for pair_reasoning"):
        fs.frame(store, pl.DataFrame({"pair_id": ["p"], "event_timestamp": [T]}), service="pair_training")
    with pytest.raises(fs.FeatureStoreError, match="no feature service"):
        fs.frame(store, pl.DataFrame({"pair_id": ["p"], "event_timestamp": [T]}), service="nope")


def test_a_view_without_ttl_never_expires(store):
    # dbt's `ttl: 0d` (item content, schedules): a value stays until replaced.
    assert not store.get_feature_view("item_content").ttl
    got = _frame(store, [1, 1], ["photo:2", "photo:2"], [T - 10 * D - S, T + 1000 * D])
    assert got["item_content__title"].to_list() == [None, "b"]


def test_ties_on_event_time_take_the_latest_created(store):
    got = _frame(store, [3], ["photo:1"], [T])
    assert got["user_features_daily__sv_plays_7d"].to_list() == [2]


def test_both_stores_give_the_same_frame(world):
    users = [1, 1, 2, 2, 3, 99, 1, 2]
    items = ["photo:1", "photo:2", "photo:1", "nope", "photo:2", "photo:1", "photo:1", "photo:2"]
    times = [T - S, T, T - D, T - D + S, T, T, T + 1000 * D, T - 20 * D]
    stock = _frame(fs.feature_store(world, _settings("duckdb")), users, items, times)
    asof = _frame(fs.feature_store(world, _settings("asof")), users, items, times)
    assert stock.columns == asof.columns
    assert stock.equals(asof)
