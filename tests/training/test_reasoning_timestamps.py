"""Reasoning is stamped with when its evidence existed: a backfill is visible after it, never before.

`rgcd reason` runs long after the logs it reads (a backfill). Its rows carry the generation time as
created_timestamp and the evidence time as event_timestamp (a pair: its last co-engagement; an
item: its first appearance), and point-in-time frames see a row from its evidence time on. The
stage also brings the online store up to date itself (the features stage ran before it wrote).
"""

from datetime import UTC, datetime, timedelta

import polars as pl

from rgcd.config import Settings
from rgcd.featurestore import store as fs
from rgcd.training.reasoning.run import reason

S = timedelta(seconds=1)


def _settings() -> Settings:
    s = Settings()
    return s.model_copy(update={"teacher": s.teacher.model_copy(update={"max_pairs": 20})})


def _around(table: pl.DataFrame, key: str, stamp: pl.DataFrame) -> pl.DataFrame:
    """Entity rows one second before and exactly at each row's evidence time."""
    return pl.concat([table.select(key, (pl.col("event_timestamp") - S).alias("event_timestamp")),
                      table.select(key, "event_timestamp")]).join(stamp, on=key, how="left")


def test_a_backfill_is_visible_after_its_evidence_and_never_before(world_ws):
    started = datetime.now(UTC)
    report = reason(world_ws, _settings(), show_progress=False)
    pairs = pl.read_parquet(world_ws.feature_data / "pair_reasoning.parquet")
    items = pl.read_parquet(world_ws.feature_data / "item_reasoning.parquet")
    marts_pairs = pl.read_parquet(world_ws.marts / "behaviour_pairs.parquet")
    content = pl.read_parquet(world_ws.marts / "item_content.parquet")

    # Stamps: the evidence time, and the generation time as created_timestamp.
    want = pairs.join(marts_pairs.select("pair_id", pl.col("last_seen").alias("want")), on="pair_id")
    assert (want["event_timestamp"] == want["want"].dt.cast_time_unit("ms")).all()
    # an item: the later of its first appearance and the evidence of the pair it was answered from,
    # the accepted pair with the earliest evidence (its answer may rest on the partner item); the
    # photo side of a pair is its photo_item_id exactly (a live target may be an author key)
    firsts = items.join(content.select("item_id", pl.col("event_timestamp").dt.cast_time_unit("ms")
                                       .alias("first")), on="item_id")
    assert firsts.height == items.height and (firsts["event_timestamp"] >= firsts["first"]).all()
    photo_pair = pairs.group_by(pl.col("photo_item_id").alias("item_id")).agg(
        pl.col("event_timestamp").min().alias("pair_seen"))
    photos = firsts.join(photo_pair, on="item_id")
    assert photos.height > 0
    want_photo = photos.select(pl.max_horizontal("first", "pair_seen")).to_series()
    assert (photos["event_timestamp"] == want_photo).all()
    assert (photos["event_timestamp"] > photos["first"]).any()  # the pair's evidence matters
    assert (pairs["created_timestamp"] >= started - S).all()
    assert (pairs["event_timestamp"] < started).all()  # a backfill: evidence long before generation

    for offline_store in ("asof", "duckdb"):  # the ASOF plugin (default) and Feast's stock store
        store = fs.feature_store(world_ws, Settings.model_validate(
            {"features": {"offline_store": offline_store}}))
        entities = _around(pairs, "pair_id", pairs.select("pair_id", "reason"))
        got = fs.frame(store, entities.drop("reason"), features=["pair_reasoning:reason"])
        n = pairs.height
        assert got["pair_reasoning__reason"][:n].is_null().all()  # before its last co-engagement
        assert got["pair_reasoning__reason"][n:].to_list() == entities["reason"][n:].to_list()

        entities = _around(items, "item_id", items.select("item_id", "key_subject"))
        got = fs.frame(store, entities.drop("key_subject"), features=["item_reasoning:key_subject"])
        n = items.height
        assert got["item_reasoning__key_subject"][:n].is_null().all()  # before the item existed
        assert got["item_reasoning__key_subject"][n:].to_list() == entities["key_subject"][n:].to_list()

    # The stage materialized item_reasoning itself: online reads answer without another stage.
    assert "materialized 1 views" in report.online and "offline only: pair_reasoning" in report.online
    first = items.sort("item_id").row(0, named=True)
    online = fs.online_features(store, "ranker", {"user_id": [1], "item_id": [first["item_id"]]})
    assert online["item_reasoning__key_subject"].to_list() == [first["key_subject"]]


def test_materialize_views_says_skipped_without_a_registry(world_marts):
    line = fs.materialize_views(world_marts, Settings(), ["item_reasoning"])
    assert line.startswith("skipped: ")
