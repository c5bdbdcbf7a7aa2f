"""The ASOF offline-store plugin takes a feature view with NO entities (issue 25, Deliver 8).

Before: such a view (a platform-wide figure: rooms on air, a global trend) crashed the plugin with
DuckDB's `ParserException` (`SELECT , ...`: the join-key list was empty). Now it is answered by a
time-only as-of join, and the answer must equal Feast's stock DuckDB store's on a tiny frame:
times on, just before and after the rows' event times, before the first row, past the TTL, with
ties on event time resolved by the created timestamp, and with the created-timestamp cut.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64

from rgcd.featurestore.offline_store import CLASS_PATH, AsofRetrievalJob

T0 = datetime(2025, 5, 5, tzinfo=UTC)
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)


def _store(root: Path, offline: str) -> FeatureStore:
    config = RepoConfig(project="noent", provider="local", registry=str(root / "registry.db"),
                        online_store={"type": "sqlite", "path": str(root / "online.db")},
                        offline_store={"type": offline}, entity_key_serialization_version=3)
    config.repo_path = root
    return FeatureStore(config=config)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[FeatureStore, FeatureStore, list[str]]:
    root = tmp_path_factory.mktemp("noentity")
    hours = [0, 3, 3, 7, 12, 30]  # a tie at hour 3: the later created_timestamp wins
    platform = pl.DataFrame({
        "event_timestamp": [T0 + timedelta(hours=h) for h in hours],
        "created_timestamp": [T0 + timedelta(hours=h, minutes=m) for h, m in zip(hours, [1, 5, 2, 90, 1, 1],
                                                                                strict=True)],
        "rooms_on_air": [10, 31, 32, 70, 120, 300], "mean_watch_s": [1.5, 3.0, 3.25, 7.0, 12.0, 30.0]},
        schema_overrides={"event_timestamp": pl.Datetime("us", "UTC"),
                          "created_timestamp": pl.Datetime("us", "UTC")})
    platform.write_parquet(root / "platform.parquet")
    pl.DataFrame({"user_id": [1, 2], "event_timestamp": [T0, T0 + timedelta(hours=5)], "level": [4, 9]},
                 schema_overrides={"event_timestamp": pl.Datetime("us", "UTC")}) \
        .write_parquet(root / "users.parquet")
    views = [
        FeatureView(name="platform", entities=[], ttl=timedelta(hours=10),
                    source=FileSource(name="platform", path=str(root / "platform.parquet"),
                                      timestamp_field="event_timestamp",
                                      created_timestamp_column="created_timestamp"),
                    schema=[Field(name="rooms_on_air", dtype=Int64),
                            Field(name="mean_watch_s", dtype=Float64)]),
        FeatureView(name="users", entities=[user], ttl=timedelta(days=1),
                    source=FileSource(name="users", path=str(root / "users.parquet"),
                                      timestamp_field="event_timestamp"),
                    schema=[Field(name="user_id", dtype=Int64), Field(name="level", dtype=Int64)]),
    ]
    stock = _store(root, "duckdb")
    stock.apply([user, *views])
    return stock, _store(root, CLASS_PATH), ["platform:rooms_on_air", "platform:mean_watch_s", "users:level"]


def _entity_rows() -> pd.DataFrame:
    at = [T0 - timedelta(hours=1), T0, T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=3),
          T0 + timedelta(hours=6, seconds=59), T0 + timedelta(hours=7), T0 + timedelta(hours=16),
          T0 + timedelta(hours=23), T0 + timedelta(hours=40, seconds=1), T0 + timedelta(hours=30)]
    return pd.DataFrame({"row": range(len(at)), "user_id": [1, 2] * (len(at) // 2),
                         "event_timestamp": pd.to_datetime(at, utc=True)})


@pytest.mark.parametrize("cut", [False, True], ids=["all_rows", "created_cut"])
def test_an_entity_less_view_is_answered_as_feast_answers_it(stores, cut):
    stock, asof, refs = stores
    kwargs = {"features": refs, "full_feature_names": True, "filter_by_created_timestamp": cut}
    want = stock.get_historical_features(entity_df=_entity_rows(), **kwargs).to_arrow().sort_by("row")
    job = asof.get_historical_features(entity_df=_entity_rows(), **kwargs)
    got = job.to_arrow()
    assert got.schema == want.schema
    assert got.equals(want), (got.to_pandas(), want.to_pandas())
    values = got["platform__rooms_on_air"].to_pylist()
    assert values[0] is None and values[-2] is None and len(set(values) - {None}) >= 4  # before, expired
    assert isinstance(job, AsofRetrievalJob)  # answered by the ASOF plan, not handed over


def test_an_entity_less_view_alone_needs_only_a_time_column(stores):
    stock, asof, _ = stores
    rows = _entity_rows()[["row", "event_timestamp"]]
    refs = ["platform:rooms_on_air"]
    want = stock.get_historical_features(entity_df=rows.copy(), features=refs).to_arrow().sort_by("row")
    got = asof.get_historical_features(entity_df=rows.copy(), features=refs).to_arrow()
    assert got.equals(want) and isinstance(got, pa.Table)
