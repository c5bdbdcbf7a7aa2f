"""The ASOF offline store answers exactly what Feast's stock DuckDB store answers.

A random world of four views (one key or two, TTL of days, of 90 minutes or none, with and without
created_timestamp, ties on event time, null created times, null values, list values) is asked
random entity rows at times placed on and around the rows' own event and created times and their
TTL edges; the two stores must return the same arrow table (values and types), with and without
the created-timestamp cut and full feature names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.infra.offline_stores.ibis import IbisRetrievalJob
from feast.repo_config import RepoConfig
from feast.types import Array, Float32, Float64, Int64, String

from rgcd.featurestore.offline_store import CLASS_PATH, AsofRetrievalJob

T0 = datetime(2025, 3, 1, tzinfo=UTC)
SPAN_MIN = 6 * 24 * 60
STEP_MIN = 6 * 60  # event times on a 6-hour grid over six days: ties on event time are common
USERS, ITEMS = 12, 8
UTC_US = pl.Datetime("us", "UTC")
TTL = {"u_daily": timedelta(days=2), "i_content": timedelta(0), "ui_pairs": timedelta(minutes=90),
       "u_plain": timedelta(hours=12)}

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)


def _minutes(rng: np.random.Generator, n: int, lo: int = 0, hi: int = SPAN_MIN,
             step: int = 1) -> list[datetime]:
    return [T0 + timedelta(minutes=int(m) * step) for m in rng.integers(lo // step, hi // step, n)]


def _events(rng: np.random.Generator, n: int) -> list[datetime]:
    return _minutes(rng, n, step=STEP_MIN)


def _created(rng: np.random.Generator, events: list[datetime], null_share: float) -> list[datetime | None]:
    # Written from two days before to three days after the event time; some never stamped.
    offsets = rng.integers(-2 * 24 * 60, 3 * 24 * 60, len(events))
    return [None if rng.random() < null_share else e + timedelta(minutes=int(o))
            for e, o in zip(events, offsets, strict=True)]


def _unique(df: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    # Two rows equal on every ordering column are an arbitrary pick in both stores: keep one.
    return df.unique(subset=keys, keep="first", maintain_order=True)


def _with_nulls(rng: np.random.Generator, values: list, share: float = 0.15) -> list:
    return [None if rng.random() < share else v for v in values]


def write_world(root: Path, seed: int) -> dict[str, Path]:
    """Four random tables as parquet; returns view name -> path."""
    rng = np.random.default_rng(seed)
    paths = {}

    n = 160
    ev = _events(rng, n)
    users = pl.DataFrame({
        "user_id": rng.integers(0, USERS, n), "event_timestamp": ev,
        "created_timestamp": _created(rng, ev, 0.1),
        "u_count": _with_nulls(rng, rng.integers(0, 100, n).tolist()),
        "u_score": _with_nulls(rng, rng.random(n).tolist()),
        "u_topic": _with_nulls(rng, rng.choice(["food", "games", "music"], n).tolist())},
        schema_overrides={"created_timestamp": UTC_US, "event_timestamp": UTC_US})
    paths["u_daily"] = _write(root, "u_daily", _unique(users, ["user_id", "event_timestamp",
                                                               "created_timestamp"]))

    n = 80
    ev = _events(rng, n)
    items = pl.DataFrame({
        "item_id": [f"i{k}" for k in rng.integers(0, ITEMS, n)], "event_timestamp": ev,
        "created_timestamp": _created(rng, ev, 0.0),
        "i_vec": [_with_nulls(rng, [[float(x) for x in rng.random(3)]], 0.2)[0] for _ in range(n)],
        "i_title": _with_nulls(rng, [f"t{k}" for k in range(n)])},
        schema_overrides={"i_vec": pl.List(pl.Float32), "event_timestamp": UTC_US})
    paths["i_content"] = _write(root, "i_content", _unique(items, ["item_id", "event_timestamp",
                                                                   "created_timestamp"]))

    n = 200
    ev = _events(rng, n)
    pairs = pl.DataFrame({
        "user_id": rng.integers(0, USERS, n), "item_id": [f"i{k}" for k in rng.integers(0, ITEMS, n)],
        "event_timestamp": ev, "created_timestamp": _created(rng, ev, 0.05),
        "p_clicks": _with_nulls(rng, rng.integers(0, 5, n).tolist())},
        schema_overrides={"event_timestamp": UTC_US})
    paths["ui_pairs"] = _write(root, "ui_pairs", _unique(pairs, ["user_id", "item_id", "event_timestamp",
                                                                 "created_timestamp"]))

    # No created_timestamp column, naive times (UTC by convention): no tie-breaker, so one row per time.
    n = 60
    ev = [e.replace(tzinfo=None) for e in _events(rng, n)]
    plain = pl.DataFrame({"user_id": rng.integers(0, USERS, n), "ts": ev,
                          "n_level": _with_nulls(rng, rng.integers(0, 9, n).tolist())})
    paths["u_plain"] = _write(root, "u_plain", _unique(plain, ["user_id", "ts"]))
    return paths


def _write(root: Path, name: str, df: pl.DataFrame) -> Path:
    path = root / f"{name}.parquet"
    df.write_parquet(path)
    return path


def views(paths: dict[str, Path]) -> list[FeatureView]:
    def src(name: str, ts: str = "event_timestamp", created: str | None = "created_timestamp") -> FileSource:
        return FileSource(name=name, path=str(paths[name]), timestamp_field=ts,
                          created_timestamp_column=created or "")

    return [
        FeatureView(name="u_daily", entities=[user], ttl=TTL["u_daily"], source=src("u_daily"),
                    schema=[Field(name="user_id", dtype=Int64), Field(name="u_count", dtype=Int64),
                            Field(name="u_score", dtype=Float64), Field(name="u_topic", dtype=String)]),
        FeatureView(name="i_content", entities=[item], ttl=TTL["i_content"], source=src("i_content"),
                    schema=[Field(name="item_id", dtype=String), Field(name="i_vec", dtype=Array(Float32)),
                            Field(name="i_title", dtype=String)]),
        FeatureView(name="ui_pairs", entities=[user, item], ttl=TTL["ui_pairs"], source=src("ui_pairs"),
                    schema=[Field(name="user_id", dtype=Int64), Field(name="item_id", dtype=String),
                            Field(name="p_clicks", dtype=Int64)]),
        FeatureView(name="u_plain", entities=[user], ttl=TTL["u_plain"], source=src("u_plain", "ts", None),
                    schema=[Field(name="user_id", dtype=Int64), Field(name="n_level", dtype=Int64)]),
    ]


REFS = ["u_daily:u_count", "u_daily:u_score", "u_daily:u_topic", "i_content:i_vec", "i_content:i_title",
        "ui_pairs:p_clicks", "u_plain:n_level"]
NEAR = [timedelta(0), timedelta(seconds=-1), timedelta(seconds=1), timedelta(microseconds=-1),
        timedelta(microseconds=1)]


def entity_rows(paths: dict[str, Path], seed: int, n: int = 400) -> pd.DataFrame:
    """Random (user, item, time) rows, most aimed at a feature row: its keys, at or just around its
    event time, its created time or its TTL's end; the rest anywhere, unknown ids and null items."""
    rng = np.random.default_rng(seed + 1000)
    tables = {name: pl.read_parquet(path) for name, path in paths.items()}
    users, items, times = [], [], []
    for _ in range(n):
        name = list(tables)[rng.integers(len(tables))]
        row = tables[name].row(int(rng.integers(tables[name].height)), named=True)
        users.append(row.get("user_id", int(rng.integers(USERS + 2))))
        items.append(row.get("item_id", f"i{rng.integers(ITEMS + 2)}"))
        at = row.get("ts") or row["event_timestamp"]
        if row.get("created_timestamp") and rng.random() < 0.3:
            at = row["created_timestamp"]
        elif rng.random() < 0.5:
            at = at + TTL[name]
        times.append(at.replace(tzinfo=UTC) + NEAR[rng.integers(len(NEAR))])
    for k in range(0, n, 17):  # anywhere, and ids no view knows
        times[k] = _minutes(rng, 1, -24 * 60, SPAN_MIN + 24 * 60)[0]
        users[k], items[k] = int(rng.integers(USERS + 2)), f"i{rng.integers(ITEMS + 2)}"
    for k in rng.integers(0, n, 10):
        items[k] = None
    df = pd.DataFrame({"row": np.arange(n), "user_id": np.array(users, dtype=np.int64), "item_id": items,
                       "event_timestamp": pd.to_datetime(times, utc=True)})
    return pd.concat([df, df.iloc[:20].assign(row=np.arange(n, n + 20))], ignore_index=True)  # repeats


def _store(root: Path, offline: str) -> FeatureStore:
    config = RepoConfig(project="cmp", provider="local", registry=str(root / "registry.db"),
                        online_store={"type": "sqlite", "path": str(root / "online.db")},
                        offline_store={"type": offline}, entity_key_serialization_version=3)
    config.repo_path = root
    return FeatureStore(config=config)


@pytest.fixture(scope="module", params=[0, 1], ids=lambda s: f"seed{s}")
def world(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"asof{request.param}")
    paths = write_world(root, request.param)
    stock = _store(root, "duckdb")
    stock.apply([user, item, *views(paths)])
    return root, paths, stock, _store(root, CLASS_PATH), entity_rows(paths, request.param)


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by("row")


@pytest.mark.parametrize("cut", [False, True], ids=["all_rows", "created_cut"])
@pytest.mark.parametrize("full_names", [True, False], ids=["full_names", "short_names"])
def test_same_frames_as_stock_feast(world, cut, full_names):
    _, _, stock, asof, ent = world
    kwargs = {"features": REFS, "full_feature_names": full_names, "filter_by_created_timestamp": cut}
    want = stock.get_historical_features(entity_df=ent.copy(), **kwargs)
    got = asof.get_historical_features(entity_df=ent.copy(), **kwargs)
    assert isinstance(want, IbisRetrievalJob) and isinstance(got, AsofRetrievalJob)
    want_t, got_t = _sorted(want.to_arrow()), got.to_arrow()
    assert got_t["row"].to_pylist() == ent["row"].tolist()  # the entity frame's order
    assert got_t.schema == want_t.schema
    assert got_t.equals(want_t)
    features = got_t.column_names[4:]
    assert all(got_t[c].null_count < got_t.num_rows for c in features)  # every view answered something
    assert any(got_t[c].null_count > 0 for c in features)
    pd.testing.assert_frame_equal(got.to_df(), want.to_df().sort_values("row").reset_index(drop=True))


def test_an_entity_frame_given_as_sql_gives_the_same_frame(world, tmp_path):
    _, _, stock, asof, ent = world
    ent.to_parquet(tmp_path / "entities.parquet")
    sql = f"SELECT * FROM read_parquet('{tmp_path / 'entities.parquet'}')"
    want = stock.get_historical_features(entity_df=ent.copy(), features=REFS, full_feature_names=True)
    got = asof.get_historical_features(entity_df=sql, features=REFS, full_feature_names=True)
    assert isinstance(got, AsofRetrievalJob)
    assert got.to_arrow().equals(_sorted(want.to_arrow()))


def test_persist_writes_the_frame_to_a_file(world, tmp_path):
    from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

    _, _, _, asof, ent = world
    job = asof.get_historical_features(entity_df=ent.copy(), features=REFS, full_feature_names=True)
    path = tmp_path / "frame.parquet"
    job.persist(SavedDatasetFileStorage(path=str(path)))
    assert pa.parquet.read_table(path).equals(job.to_arrow())
    from feast.errors import SavedDatasetLocationAlreadyExists

    with pytest.raises(SavedDatasetLocationAlreadyExists):
        job.persist(SavedDatasetFileStorage(path=str(path)))


def test_what_the_plan_cannot_do_goes_to_the_stock_store(world):
    root, paths, stock, asof, ent = world
    renamed = FileSource(name="u_renamed", path=str(paths["u_daily"]), timestamp_field="event_timestamp",
                         created_timestamp_column="created_timestamp", field_mapping={"u_count": "count"})
    view = FeatureView(name="u_renamed", entities=[user], ttl=timedelta(days=2), source=renamed,
                       schema=[Field(name="user_id", dtype=Int64), Field(name="count", dtype=Int64)])
    asof.apply([view])
    refs = ["u_renamed:count", "u_daily:u_score"]
    got = asof.get_historical_features(entity_df=ent.copy(), features=refs, full_feature_names=True)
    assert isinstance(got, IbisRetrievalJob)  # the stock job, whole
    want = stock.get_historical_features(entity_df=ent.copy(), features=refs, full_feature_names=True)
    assert _sorted(got.to_arrow()).equals(_sorted(want.to_arrow()))
