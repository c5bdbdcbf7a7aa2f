"""Stage 1 reads behaviour pairs and item content through Feast (training/frames.py)."""

import shutil
from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from stage1_world import write_world

from rgcd.config import Settings, Workspace
from rgcd.featurestore.store import apply
from rgcd.training.frames import ITEM_FEATURES, PAIR_FEATURES, MissingInput, read_stage1_frames


def test_frames_hold_every_id_with_the_marts_values(world_ws):
    frames = read_stage1_frames(world_ws, Settings())
    bp = pl.read_parquet(world_ws.marts / "behaviour_pairs.parquet").sort("pair_id")
    items = pl.read_parquet(world_ws.marts / "item_content.parquet").sort("item_id")
    assert frames.unanswered == 0
    assert frames.request_time == max(bp["event_timestamp"].max(), items["event_timestamp"].max())
    assert_frame_equal(frames.pairs, bp.select("pair_id", *PAIR_FEATURES, "event_timestamp"),
                       check_dtypes=False)
    assert_frame_equal(frames.items, items.select("item_id", *ITEM_FEATURES,
                                                  pl.col("event_timestamp").alias("first_appearance")),
                       check_dtypes=False)


STORES = ("asof", "duckdb")  # features.offline_store: the ASOF plugin (default), Feast's stock store


def _settings(store: str) -> Settings:
    return Settings.model_validate({"features": {"offline_store": store}})


def test_the_asof_and_stock_offline_stores_give_the_same_frames(world_ws):
    stock = read_stage1_frames(world_ws, _settings("duckdb"))
    asof = read_stage1_frames(world_ws, _settings("asof"))
    assert_frame_equal(stock.pairs, asof.pairs)
    assert_frame_equal(stock.items, asof.items)


def test_point_in_time_takes_the_latest_version_and_skips_ids_without_a_row(world_ws):
    path = world_ws.marts / "item_content.parquet"
    items = pl.read_parquet(path)
    first = items.row(0, named=True)
    later = {**first, "title": "renamed", "event_timestamp": first["event_timestamp"] + timedelta(hours=1)}
    # Same event time as `later`, written later: Feast breaks the tie by created_timestamp.
    redo = {**later, "title": "renamed again", "created_timestamp": later["created_timestamp"] + timedelta(1)}
    orphan = {**first, "item_id": "photo:999999", "event_timestamp": None}
    pl.concat([items, pl.DataFrame([later, redo, orphan], schema=items.schema)]).write_parquet(path)
    for store in STORES:
        frames = read_stage1_frames(world_ws, _settings(store), pairs=False)
        got = frames.items.filter(pl.col("item_id") == first["item_id"])
        assert got["title"].to_list() == ["renamed again"]
        assert frames.items.height == items.height and frames.unanswered == 1
        assert frames.pairs.height == 0


def test_without_feast_applied_the_error_names_the_command(world_marts):
    with pytest.raises(MissingInput, match="features apply"):
        read_stage1_frames(world_marts, Settings())


def test_a_copied_registry_pointing_at_other_marts_is_refused(world_ws, tmp_path):
    copy = Workspace(tmp_path / "copy")
    shutil.copytree(world_ws.root, copy.root)
    with pytest.raises(MissingInput, match=f"rgcd -w {copy.root} features apply"):
        read_stage1_frames(copy, Settings())
    apply(copy, Settings())
    assert read_stage1_frames(copy, Settings()).pairs.height > 0


def test_missing_marts_name_the_build_command(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    write_world(ws.marts)
    (ws.marts / "behaviour_pairs.parquet").unlink()
    with pytest.raises(MissingInput, match="rgcd build"):
        read_stage1_frames(ws, Settings())
    # Item content alone (stage 1b) does not need the pairs.
    apply(ws, Settings())
    assert read_stage1_frames(ws, Settings(), pairs=False).items.height > 0


def test_distills_items_read_in_windows_equal_the_whole_read(world_ws, tmp_path):
    """`StudentItems` (distill) reads item content through Feast a few ids at a time into a file:
    the same rows, order (known before the cut first), digest and known count as one whole read,
    with a restated item and one the store does not answer."""
    from rgcd.training.student_items import KEPT, ItemsDigest, StudentItems, known_first

    path = world_ws.marts / "item_content.parquet"
    items = pl.read_parquet(path)
    first = items.row(0, named=True)
    later = {**first, "title": "renamed", "event_timestamp": first["event_timestamp"] + timedelta(hours=1)}
    orphan = {**first, "item_id": "photo:999999", "event_timestamp": None}
    pl.concat([items, pl.DataFrame([later, orphan], schema=items.schema)]).write_parquet(path)
    cut = items["event_timestamp"].sort()[items.height // 2]
    whole, n_known = known_first(read_stage1_frames(world_ws, Settings(), pairs=False).items, cut)
    settings = Settings.model_validate({"student": {"read_batch_items": 3}})
    got = StudentItems.read(world_ws, settings, cut, tmp_path / "items.parquet")
    assert 0 < n_known < whole.height and got.n_known == n_known and got.height == whole.height
    assert_frame_equal(pl.concat(got.windows(size=4)), whole.select(KEPT), check_dtypes=False)
    assert_frame_equal(got.slice(5, 3), whole.select(KEPT).slice(5, 3), check_dtypes=False)
    assert got.digest == ItemsDigest().update(whole).hexdigest()
    assert got["item_id"].to_list() == whole["item_id"].to_list()
