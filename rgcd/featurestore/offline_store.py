"""A Feast offline store whose point-in-time join is DuckDB's ASOF JOIN.

Selected in the Feast configuration by class path (Feast's plugin mechanism):

    offline_store:
      type: rgcd.featurestore.offline_store.AsofOfflineStore

It is the stock DuckDB store (`feast.infra.offline_stores.duckdb.DuckDBOfflineStore`: the same
reads for materialize, writes, logging, monitoring) with one method replaced:
`get_historical_features`. Why: the SQL Feast generates range-joins every entity row to every
snapshot inside the TTL window, then ranks the matches with ROW_NUMBER() keyed on a string row
id; at 1M entity rows that is ~16x the time of an ASOF JOIN over the same parquet
(benchmarks/feast_frames.py). Here each view is one `ASOF LEFT JOIN`, so the work is a sort of
each side, whatever the TTL.

Feast's rule, kept exactly (stock: feast/infra/offline_stores/ibis.py, point_in_time_join):
a feature row is a candidate for an entity row at request time T when its join keys are equal,
event_timestamp <= T, event_timestamp + ttl >= T (when the view has a TTL) and, with
`filter_by_created_timestamp`, created_timestamp <= T; of the candidates, the one with the latest
event_timestamp wins, ties going to the latest created_timestamp (a null one loses).

- Without the created cut, the ASOF key is (event_timestamp, created_timestamp) packed into one
  HUGEINT, so ties on event time resolve inside the join; the TTL is a test on the winner (the
  winner has the latest event time, so if it is too old, every candidate is).
- With the cut, a row becomes visible at max(event_timestamp, created_timestamp). Rows sorted by
  that time, a running arg_max over (event_timestamp, created_timestamp) gives the winner among
  the rows visible by then, and the ASOF JOIN on the visible-from time picks the running winner
  at T: the same candidate set and the same order as Feast's.

Whatever it does not handle in that plan goes to the stock store unchanged (see `_stock_reason`):
on-demand views, non-parquet or remote sources, field mappings, missing files, entity frames
without their join keys, staging locations, timestamp-range retrieval without an entity frame.
An entity frame given as SQL runs in DuckDB first (the stock store takes only pandas).
Rows come back in the entity frame's order (the stock store's order is unspecified).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from feast.feature_view import FeatureView
from feast.infra.offline_stores.duckdb import (
    DuckDBOfflineStore,
    DuckDBOfflineStoreConfig,
    _write_data_source,
)
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import infer_event_timestamp_from_entity_df
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.saved_dataset import SavedDatasetStorage
from pydantic import StrictStr

log = logging.getLogger(__name__)

CLASS_PATH = "rgcd.featurestore.offline_store.AsofOfflineStore"
_ROW = "__rgcd_asof_row"  # entity row order, dropped from the answer
# A probe sorts after every (event time, any created time) pair of its own event time.
_PROBE_LOW = (1 << 64) - 1
_CREATED_OFFSET = 1 << 63  # created epoch-us (signed) -> [0, 2^64): a null created packs as 0


class AsofOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """The stock DuckDB store's settings; only the type differs."""

    type: StrictStr = CLASS_PATH


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class _ViewPlan:
    """What one view contributes: its source, keys, rule and the output columns."""

    path: str
    timestamp: str
    created: str | None
    keys: tuple[tuple[str, str], ...]  # (feature table column, entity column)
    features: tuple[tuple[str, str], ...]  # (source column, output column)
    ttl_us: int  # 0: never expires
    cut_by_created: bool


def _is_local_parquet(source: Any) -> bool:
    if type(source) is not FileSource:  # subclasses (Lance, Iceberg, ...) read differently
        return False
    from feast.data_format import ParquetFormat

    fmt = source.file_format
    parquet = isinstance(fmt, ParquetFormat) or (fmt is None and source.path.endswith(".parquet"))
    return parquet and "://" not in source.path and Path(source.path).is_file()


def _stock_reason(config: RepoConfig, feature_views: list, feature_refs: list[str],
                  entity_columns: list[str] | None) -> str | None:
    """Why this request goes to the stock store, or None when the ASOF plan answers it."""
    if entity_columns is None:
        return "no entity frame (timestamp-range retrieval)"
    if getattr(config.offline_store, "staging_location", None):
        return "a staging location is configured"
    names = set()
    for fv in feature_views:
        if not isinstance(fv, FeatureView) or isinstance(fv, OnDemandFeatureView):
            return f"{getattr(fv, 'name', fv)!r} is not a plain feature view"
        source = fv.batch_source
        if source is None or not _is_local_parquet(source):
            return f"{fv.name!r} does not read a local parquet file"
        if source.field_mapping:
            return f"{fv.name!r} has a field mapping"
        missing = [v for v in _join_key_map(fv).values() if v not in entity_columns]
        if missing:
            return f"the entity frame lacks {missing} for {fv.name!r}"
        names.add(fv.projection.name_to_use())
    if any(ref.split(":", 1)[0] not in names for ref in feature_refs):
        return "a feature reference is not of a plain feature view (on-demand views)"
    return None


def _join_key_map(fv: FeatureView) -> dict[str, str]:
    return fv.projection.join_key_map or {e.name: e.name for e in fv.entity_columns}


def _view_plan(fv: FeatureView, feature_refs: list[str], full_feature_names: bool,
               filter_by_created_timestamp: bool) -> _ViewPlan:
    prefix = fv.projection.name_to_use()
    base = fv.projection.name_alias or fv.name  # Feast names columns without the version
    feats = [r.split(":", 1)[1] for r in feature_refs if r.startswith(f"{prefix}:")]
    source = fv.batch_source
    created = source.created_timestamp_column or None
    return _ViewPlan(
        path=source.path, timestamp=source.timestamp_field, created=created,
        keys=tuple(_join_key_map(fv).items()),
        features=tuple((f, f"{base}__{f}" if full_feature_names else f) for f in feats),
        ttl_us=int(fv.ttl.total_seconds() * 1_000_000) if fv.ttl else 0,
        cut_by_created=bool(filter_by_created_timestamp and created),
    )


def _tz(col: str) -> str:
    return f"CAST({_quote(col)} AS TIMESTAMPTZ)"


def _view_sql(p: _ViewPlan) -> str:
    """The view's rows as an ASOF right side: keys, __k (the ASOF key), __ts and the features.

    A view without entities (a platform-wide figure) has no keys: its rows are one time series
    and the join is on time alone.
    """
    key_list = [_quote(k) for k, _ in p.keys]
    keys = "".join(f"{k}, " for k in key_list)  # each followed by a comma: none for no entities
    # Only the rows of the entities asked for: a row of another entity can never join, and without
    # this filter every read sorted the whole table (a window of 5,000 items cost as much memory
    # as the whole catalogue: benchmarks/distill_items_memory.py).
    not_null = "".join(f" AND {_quote(k)} IS NOT NULL AND {_quote(k)} IN (SELECT {_quote(e)} FROM entities)"
                       for k, e in p.keys)
    partition = f"PARTITION BY {', '.join(key_list)} " if key_list else ""
    src = f"read_parquet({_sql_str(p.path)})"
    feats = [f"{_quote(c)} AS __f{i}" for i, (c, _) in enumerate(p.features)]
    if not p.cut_by_created:
        if p.created:
            key = (f"(epoch_us({_tz(p.timestamp)})::HUGEINT << 64) + coalesce(epoch_us("
                   f"{_tz(p.created)})::HUGEINT + {_CREATED_OFFSET}, 0)")
        else:
            key = _tz(p.timestamp)
        return (f"SELECT {keys}{key} AS __k, {_tz(p.timestamp)} AS __ts, {', '.join(feats)} "
                f"FROM {src} WHERE {_quote(p.timestamp)} IS NOT NULL{not_null}")
    fields = ", ".join(["__ts := __ts", *(f"__f{i} := __f{i}" for i in range(len(p.features)))])
    visible = (f"SELECT {keys}{_tz(p.timestamp)} AS __ts, {_tz(p.created)} AS __c, "
               f"{', '.join(feats)} FROM {src} WHERE {_quote(p.timestamp)} IS NOT NULL AND "
               f"{_quote(p.created)} IS NOT NULL{not_null}")
    best = (f"arg_max(struct_pack({fields}), struct_pack(t := __ts, c := __c)) OVER ({partition}"
            f"ORDER BY greatest(__ts, __c) RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)")
    return (f"SELECT {keys}greatest(__ts, __c) AS __k, __b.__ts AS __ts, "
            f"{', '.join(f'__b.__f{i} AS __f{i}' for i in range(len(p.features)))} "
            f"FROM (SELECT *, {best} AS __b FROM ({visible}))")


def _query(plans: list[_ViewPlan], event_col: str, entity_schema: pa.Schema) -> str:
    """One SELECT: the entity rows, one ASOF LEFT JOIN per view, in the entity frame's order."""
    t = _quote(event_col)
    probe = f"(epoch_us(CAST({t} AS TIMESTAMPTZ))::HUGEINT << 64) + {_PROBE_LOW}::HUGEINT"
    ent = f"SELECT *, CAST({t} AS TIMESTAMPTZ) AS __t, {probe} AS __p FROM entities"
    joins, outputs = [], []
    for i, p in enumerate(plans):
        f = f"f{i}"
        on = [f"e.{_quote(ec)} = {f}.{_quote(fc)}" for fc, ec in p.keys]
        probe_col = "e.__p" if (p.created and not p.cut_by_created) else "e.__t"
        on.append(f"{probe_col} >= {f}.__k")
        joins.append(f"ASOF LEFT JOIN ({_view_sql(p)}) {f} ON {' AND '.join(on)}")
        alive = (f"{f}.__ts >= e.__t - to_microseconds({p.ttl_us}::BIGINT)" if p.ttl_us
                 else f"{f}.__ts IS NOT NULL")
        outputs += [f"CASE WHEN {alive} THEN {f}.__f{j} END AS {_quote(out)}"
                    for j, (_, out) in enumerate(p.features)]
    cols = [_entity_output(f) for f in entity_schema]
    return (f"SELECT {', '.join(cols + outputs)} FROM ({ent}) e {' '.join(joins)} "
            f"ORDER BY e.{_quote(_ROW)}")


def _entity_output(field: pa.Field) -> str:
    """An entity column as the stock store returns it: zoned timestamps in microseconds."""
    if pa.types.is_timestamp(field.type) and field.type.tz is not None:
        return f"CAST(e.{_quote(field.name)} AS TIMESTAMPTZ) AS {_quote(field.name)}"
    return f"e.{_quote(field.name)}"


def _entity_table(entity_df: pd.DataFrame | str) -> tuple[pa.Table, str]:
    """The entity rows as arrow (SQL runs in DuckDB) and the event timestamp column's name."""
    if isinstance(entity_df, str):
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        table = con.sql(entity_df).to_arrow_table()
        schema = {f.name: (np.dtype("datetime64[ns]") if pa.types.is_timestamp(f.type) else np.dtype(object))
                  for f in table.schema}
        return table, infer_event_timestamp_from_entity_df(schema)
    event_col = infer_event_timestamp_from_entity_df(entity_df.dtypes.to_dict())
    ts = entity_df[event_col].infer_objects()
    if pd.api.types.is_string_dtype(ts) or pd.api.types.is_object_dtype(ts):  # as the stock store
        entity_df = entity_df.assign(**{event_col: pd.to_datetime(ts, utc=True)})
    return pa.Table.from_pandas(entity_df, preserve_index=False), event_col


def _timestamp_range(table: pa.Table, event_col: str) -> tuple[datetime | None, datetime | None]:
    import pyarrow.compute as pc

    bounds = pc.min_max(table[event_col])
    return bounds["min"].as_py(), bounds["max"].as_py()


class AsofRetrievalJob(RetrievalJob):
    """A planned ASOF query over the entity rows; runs on to_arrow / to_df / persist."""

    def __init__(self, entities: pa.Table, sql: str, feature_refs: list[str], event_col: str,
                 full_feature_names: bool, repo_path: str) -> None:
        super().__init__()
        self._entities = entities
        self.sql = sql
        self._full_feature_names = full_feature_names
        self._repo_path = repo_path
        lo, hi = _timestamp_range(entities, event_col)
        keys = [c for c in entities.column_names if c not in (event_col, _ROW)]
        self._metadata = RetrievalMetadata(features=feature_refs, keys=keys,
                                           min_event_timestamp=lo, max_event_timestamp=hi)

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        from rgcd.memory import duckdb_connect_like_feast

        con = duckdb_connect_like_feast()  # the workspace's DuckDB memory limit and spill folder
        try:
            con.register("entities", self._entities)
            return con.sql(self.sql).to_arrow_table()
        finally:
            con.close()

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return []

    @property
    def metadata(self) -> RetrievalMetadata:
        return self._metadata

    def persist(self, storage: SavedDatasetStorage, allow_overwrite: bool = False,
                timeout: int | None = None) -> None:
        """Write the frame where the saved dataset's storage says, as the stock store writes it."""
        import ibis

        _write_data_source(ibis.memtable(self._to_arrow_internal(timeout)), storage.to_data_source(),
                           self._repo_path, "overwrite", allow_overwrite)


class AsofOfflineStore(DuckDBOfflineStore):
    """The stock DuckDB offline store with point-in-time joins done by ASOF JOIN."""

    supports_filter_by_created_timestamp = True

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        entity_columns = _entity_columns(entity_df)
        reason = _stock_reason(config, feature_views, feature_refs, entity_columns) if not kwargs \
            else "timestamp-range arguments"
        if reason is not None:
            log.debug("ASOF offline store hands the request to the stock DuckDB store: %s", reason)
            return DuckDBOfflineStore.get_historical_features(
                config=config, feature_views=feature_views, feature_refs=feature_refs,
                entity_df=entity_df, registry=registry, project=project,
                full_feature_names=full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp, **kwargs)
        entities, event_col = _entity_table(entity_df)
        schema = entities.schema
        entities = entities.append_column(_ROW, pa.array(np.arange(entities.num_rows, dtype=np.int64)))
        plans = [_view_plan(fv, feature_refs, full_feature_names, filter_by_created_timestamp)
                 for fv in feature_views]
        return AsofRetrievalJob(entities, _query(plans, event_col, schema), feature_refs, event_col,
                                full_feature_names, str(config.repo_path))


def _entity_columns(entity_df: pd.DataFrame | str | None) -> list[str] | None:
    """Column names of the entity frame without running anything heavy (SQL: DESCRIBE)."""
    if entity_df is None:
        return None
    if isinstance(entity_df, str):
        con = duckdb.connect()
        try:
            return [row[0] for row in con.sql(f"DESCRIBE ({entity_df})").fetchall()]
        except duckdb.Error:
            return None  # the stock store reports the entity frame it cannot read
        finally:
            con.close()
    return [str(c) for c in entity_df.columns]
