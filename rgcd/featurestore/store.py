"""The Feast-facing API: apply the repo to a workspace, fetch point-in-time frames as polars,
materialize, read online features, serve them.

Configuration is built in code from the workspace (`repo_config`), so every path Feast touches
lives in the workspace whatever the working directory; the resolved configuration is also written
to <workspace>/feast/feature_store.yaml, the folder `feast serve` and the `feast` CLI run from.
The definitions are feature_repo/*.py, imported the way `feast apply` imports them.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import yaml

from rgcd.atomic import write_text_atomic
from rgcd.config import Settings, Workspace
from rgcd.errors import RgcdError
from rgcd.faults import kill_point

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.repo_config import RepoConfig
    from feast.repo_contents import RepoContents

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REPO_DIR = PROJECT_ROOT / "feature_repo"
GENERATED = Path("views") / "generated.py"
# Top-level module names of feature_repo/ (Feast imports repo files by their path in the repo).
_REPO_MODULES = ("entities", "sources", "services", "views")
ROW = "__rgcd_row"


class FeatureStoreError(RgcdError):
    """The feature store cannot do what was asked; the message says what to do."""

    exit_code = 2


def _config_dict(ws: Workspace, settings: Settings) -> dict:
    f = settings.features
    if f.online_store == "redis":
        import importlib.util

        if importlib.util.find_spec("redis") is None:
            raise FeatureStoreError("features.online_store is redis but the redis client is not "
                                    "installed: pip install 'feast[redis]==0.67.0'")
        online = {"type": "redis", "connection_string": f.redis_connection_string}
    else:
        online = {"type": "sqlite", "path": str(ws.feast / "online_store.db")}
    return {
        "project": f.project,
        "provider": "local",
        "registry": {"path": str(ws.feast / "registry.db"), **_registry_cache()},
        "online_store": online,
        "offline_store": {"type": _offline_store_type(f.offline_store)},
        # Feast converts and writes a window's rows in batches of this size, not all at once.
        "materialization": {"online_write_batch_size": f.online_write_batch_rows},
        "entity_key_serialization_version": 3,
    }


def _registry_cache() -> dict:
    """Registry caching for online reads (rgcd/featurestore/online.py: never refreshed in a request)."""
    from rgcd.featurestore.online import REGISTRY_CACHE

    return dict(REGISTRY_CACHE)


def _offline_store_type(name: str) -> str:
    """Feast's offline store type for features.offline_store (asof: this package's plugin)."""
    from rgcd.featurestore.offline_store import CLASS_PATH

    return CLASS_PATH if name == "asof" else "duckdb"


def repo_config(ws: Workspace, settings: Settings, repo_dir: Path = REPO_DIR) -> RepoConfig:
    """Feast's configuration for this workspace: registry and online store under <ws>/feast."""
    from feast.repo_config import RepoConfig

    from rgcd.memory import limit_ibis_backend

    limit_ibis_backend(ws, settings)  # Feast's DuckDB offline store reads through ibis's backend
    config = RepoConfig(**_config_dict(ws, settings))
    config.repo_path = repo_dir
    return config


def write_runtime_yaml(ws: Workspace, settings: Settings) -> Path:
    """Write <ws>/feast/feature_store.yaml (resolved paths) for `feast serve` / `feast -c <ws>/feast`."""
    ws.feast.mkdir(parents=True, exist_ok=True)
    path = ws.feast / "feature_store.yaml"
    header = "# Written by `rgcd features apply` from rgcd.yaml; edit rgcd.yaml instead.\n"
    write_text_atomic(header + yaml.safe_dump(_config_dict(ws, settings), sort_keys=False), path)
    return path


@contextlib.contextmanager
def _repo_import(ws: Workspace, repo_dir: Path) -> Iterator[None]:
    """Import the repo's files fresh, as `feast apply` does, with RGCD_WORKSPACE set to `ws`."""
    repo_dir = repo_dir.resolve()
    old_env, old_cwd = os.environ.get("RGCD_WORKSPACE"), os.getcwd()
    for name in list(sys.modules):
        if name.split(".")[0] in _REPO_MODULES:
            del sys.modules[name]
    importlib.invalidate_caches()
    os.environ["RGCD_WORKSPACE"] = str(ws.root)
    sys.path.insert(0, str(repo_dir))
    os.chdir(repo_dir)  # Feast names repo modules by their path relative to the working directory
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path.remove(str(repo_dir))
        if old_env is None:
            os.environ.pop("RGCD_WORKSPACE", None)
        else:
            os.environ["RGCD_WORKSPACE"] = old_env


def dbt_manifest(ws: Workspace) -> Path:
    """Where `rgcd build` (and `dbt parse` through rgcd) leave dbt's manifest for this workspace."""
    return ws.dbt_artifacts / "target" / "manifest.json"


def parse_dbt(ws: Workspace, settings: Settings) -> Path:
    """`dbt parse` of this checkout's dbt project (no data needed): a fresh manifest of the YAML."""
    from rgcd.warehouse import run_dbt

    run_dbt(ws, settings, "parse")
    return dbt_manifest(ws)


def load_definitions(ws: Workspace, repo_dir: Path = REPO_DIR) -> RepoContents:
    """Every Feast object defined under repo_dir, with source paths in `ws`."""
    from feast.repo_operations import parse_repo

    with _repo_import(ws, repo_dir):
        try:
            return parse_repo(repo_dir.resolve())
        except ImportError as err:
            raise FeatureStoreError(
                f"feature_repo does not import ({err}); if a mart view went away, run "
                "`rgcd features sync` and fix services.py") from err


def entity_join_keys(repo_dir: Path = REPO_DIR) -> dict[str, str]:
    """Entity name -> join key, from feature_repo/entities.py."""
    import runpy

    from feast import Entity

    found = runpy.run_path(str(repo_dir / "entities.py"))
    entities = {var: e for var, e in found.items() if isinstance(e, Entity)}
    for var, e in entities.items():
        if var != e.name:  # generated.py imports an entity by its name
            raise FeatureStoreError(f"entities.py: variable {var!r} must be named like its entity {e.name!r}")
    return {e.name: e.join_key for e in entities.values()}


def registry_file(ws: Workspace) -> Path:
    return ws.feast / "registry.db"


def _recorded_paths(message) -> set[str]:
    """Every file path a registry proto records (source uris, online-store table paths)."""
    from google.protobuf.message import Message

    found: set[str] = set()
    for field, value in message.ListFields():
        if isinstance(value, Message | str | bytes | int | float):
            values = [value]
        else:  # a repeated field or a map
            values = list(value.values()) if hasattr(value, "values") else list(value)
        for v in values:
            if isinstance(v, Message):
                found |= _recorded_paths(v)
            elif isinstance(v, str) and field.name in ("uri", "path", "file_url") and v:
                found.add(v)
    return found


def foreign_paths(ws: Workspace) -> list[str]:
    """Paths the workspace's Feast registry records outside the workspace, e.g. after `cp -r`.

    Feast writes absolute paths into its registry (sources, the SQLite online store's tables);
    a registry copied or moved with its workspace still names the old one, and applying over it
    would drop the OLD workspace's online tables. Read from the proto, not through Feast: loading
    its infra objects opens a connection to every SQLite file they name. An unreadable registry
    is reported as foreign too (it cannot be trusted or used).
    """
    path = registry_file(ws)
    if not path.exists():
        return []
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

    proto = RegistryProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception:  # a torn or foreign file: protobuf raises DecodeError and others
        return [f"{path} (unreadable)"]
    root = ws.root.resolve()
    return sorted(p for p in _recorded_paths(proto)
                  if "://" not in p and not Path(p).resolve().is_relative_to(root))


def check_sealed(ws: Workspace) -> None:
    """Refuse a registry that belongs to another workspace (copied or moved): never follow it."""
    foreign = foreign_paths(ws)
    if foreign:
        raise FeatureStoreError(
            f"the Feast registry in {ws.feast} belongs to another workspace (it names {foreign[0]}"
            f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}; copied or moved?): run "
            f"`rgcd -w {ws.root} features apply` to rebuild it for this workspace, then "
            f"`rgcd -w {ws.root} features materialize` to reload its online store")


def feature_store(ws: Workspace, settings: Settings) -> FeatureStore:
    """A FeatureStore over this workspace's registry (apply first).

    Its registry cache never expires inside a call; a long-lived caller that must see a later
    `apply` calls `refresh_registry()` (cheap when nothing changed; rgcd/featurestore/online.py).
    """
    from rgcd.featurestore.online import RegistryWatchingStore

    if not registry_file(ws).exists():
        raise FeatureStoreError(f"no Feast registry in {ws.feast}; run `rgcd features apply` first")
    check_sealed(ws)
    return RegistryWatchingStore(config=repo_config(ws, settings))


def _drop_foreign_registry(ws: Workspace, settings: Settings) -> str:
    """Before apply: remove this workspace's copy of another workspace's registry and online store.

    Both files are this workspace's own copies (so removing them touches nothing elsewhere);
    the registry is rebuilt by the apply and the online store by the next materialize.
    """
    foreign = foreign_paths(ws)
    if not foreign:
        return ""
    registry_file(ws).unlink()
    if settings.features.online_store == "sqlite":
        (ws.feast / "online_store.db").unlink(missing_ok=True)
    return (f"rebuilt the registry (the one here named {foreign[0]}, another workspace's); the online "
            f"store is empty until `rgcd -w {ws.root} features materialize`")


@dataclass(frozen=True)
class ApplyReport:
    """What `apply` registered, and Feast's printed registry diff."""

    views: tuple[str, ...]
    services: tuple[str, ...]
    diff: str
    note: str = ""

    def one_line(self) -> str:
        """Figures for the command line and the stage report."""
        line = f"applied {len(self.views)} feature views, {len(self.services)} feature services"
        return f"{line}; {self.note}" if self.note else line


def apply(ws: Workspace, settings: Settings, repo_dir: Path = REPO_DIR) -> ApplyReport:
    """`feast apply` for this workspace: register the repo's objects, delete the ones removed."""
    from feast import FeatureStore, Project
    from feast.repo_operations import apply_total_with_repo_instance

    ws.feast.mkdir(parents=True, exist_ok=True)
    note = _drop_foreign_registry(ws, settings)
    write_runtime_yaml(ws, settings)
    repo = load_definitions(ws, repo_dir)
    store = FeatureStore(config=repo_config(ws, settings, repo_dir))
    if not repo.projects:  # as `feast apply` does: the project named in the configuration
        repo.projects.append(Project(name=store.project, description="rgcd feature store"))
    out = io.StringIO()
    # Sources are not validated: model-stage tables (reasoning, vectors) appear later in a run.
    with contextlib.redirect_stdout(out):
        apply_total_with_repo_instance(store, store.project, store.registry, repo,
                                       skip_source_validation=True)
    return ApplyReport(tuple(sorted(v.name for v in repo.feature_views)),
                       tuple(sorted(s.name for s in repo.feature_services)), out.getvalue(), note)


def generated_marts(repo_dir: Path = REPO_DIR) -> list[str]:
    """The marts the generated views read (from views/generated.py, without importing Feast)."""
    import re

    path = repo_dir / GENERATED
    found = re.findall(r"mart_source\('(\w+)'", path.read_text()) if path.exists() else []
    return list(dict.fromkeys(found))


def run_stage(ws: Workspace, settings: Settings, repo_dir: Path = REPO_DIR) -> str:
    """The `features` stage of `rgcd run`: apply, then materialize; skipped while marts are missing."""
    marts = generated_marts(repo_dir)
    missing = [m for m in marts if not (ws.marts / f"{m}.parquet").exists()]
    if not marts or missing:
        return (f"skipped: marts not built yet ({', '.join(missing) or 'no generated views'} under "
                f"{ws.marts}); run the build stage (dbt) first")
    note = ""
    if dbt_manifest(ws).exists():  # written by the build stage
        from rgcd.featurestore import dbt_sync

        check = dbt_sync.sync(dbt_manifest(ws), entity_join_keys(repo_dir), repo_dir / GENERATED,
                                  check=True)
        if check.stale:
            note = "; WARNING views/generated.py is stale vs dbt's manifest: run `rgcd features sync`"
    applied = apply(ws, settings, repo_dir)
    kill_point("features.after_apply")
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints a progress line per view
        loaded = materialize(feature_store(ws, settings),
                             slice_rows=settings.features.materialize_slice_rows)
    return f"{applied.one_line()}; {loaded.one_line()}{note}"


def source_path(view: FeatureView) -> Path:
    """The parquet file behind a feature view."""
    return Path(view.batch_source.path)


def missing_sources(views: list[FeatureView]) -> list[FeatureView]:
    """The views whose parquet does not exist (yet)."""
    return [v for v in views if not source_path(v).exists()]


def _is_regenerated(view: FeatureView) -> bool:
    return view.tags.get("regenerated") == "true"


def _feature_refs(store: FeatureStore, service: str | None, features: list[str] | None,
                  views: list[str] | None = None) -> list[str]:
    if features:
        return list(features)
    if service is None:
        raise FeatureStoreError("give a feature service or a list of 'view:feature' references")
    from feast.errors import FeatureServiceNotFoundException

    try:
        fs = store.get_feature_service(service)
    except FeatureServiceNotFoundException:
        names = sorted(s.name for s in store.list_feature_services())
        raise FeatureStoreError(f"no feature service {service!r}; known: {names}") from None
    refs = [f"{p.name_to_use()}:{f.name}" for p in fs.feature_view_projections for f in p.features]
    if views is not None:
        unknown = sorted(set(views) - {r.split(":")[0] for r in refs})
        if unknown:
            raise FeatureStoreError(f"feature service {service!r} has no view(s) {unknown}")
        refs = [r for r in refs if r.split(":")[0] in views]
    return refs


def read_entity_frame(path: Path) -> pl.DataFrame:
    """An entity frame from a parquet file (join keys + event_timestamp); FeatureStoreError naming
    the file when it is not one (e.g. a CSV)."""
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        detail = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise FeatureStoreError(f"{path} is not a parquet file ({detail}): write the entity rows (join keys "
                                "and event_timestamp) as parquet, e.g. polars' DataFrame.write_parquet"
                                ) from None


def _entity_frame(entities: pl.DataFrame) -> pl.DataFrame:
    if "event_timestamp" not in entities.columns:
        raise FeatureStoreError("the entity frame needs an event_timestamp column (the request time)")
    ts = entities.schema["event_timestamp"]
    if not isinstance(ts, pl.Datetime):
        raise FeatureStoreError(f"event_timestamp must be a datetime column, not {ts}")
    if ts.time_zone is None:  # naive request times are taken as UTC, like every time in the platform
        entities = entities.with_columns(pl.col("event_timestamp").dt.replace_time_zone("UTC"))
    return entities.with_columns(pl.col("event_timestamp").dt.convert_time_zone("UTC")
                                 .dt.cast_time_unit("us"))


def frame(store: FeatureStore, entities: pl.DataFrame, service: str | None = "training",
          features: list[str] | None = None, views: list[str] | None = None) -> pl.DataFrame:
    """A point-in-time-correct frame: `entities` (join keys + event_timestamp) plus features.

    Columns are the entities' then `<view>__<feature>` in the service's order; rows keep the
    entities' order. A value is visible at a request time T when its event_timestamp <= T and T
    is within the view's TTL after it (ties: the latest created_timestamp); views tagged
    `regenerated` (reasoning, vectors) also need created_timestamp <= T, so a row written later
    is not seen. `views` reads only those views of the service (e.g. before a stage wrote the rest).
    Feast's get_historical_features answers, through the configured offline store
    (features.offline_store: the ASOF plugin by default, rgcd/featurestore/offline_store.py).
    """
    refs = _feature_refs(store, service, features, views)
    views = {r.split(":")[0] for r in refs}
    by_name = {v.name: v for v in store.list_feature_views()}
    unknown = sorted(views - set(by_name))
    if unknown:
        raise FeatureStoreError(f"unknown feature views {unknown}; run `rgcd features apply`")
    missing = missing_sources([by_name[v] for v in sorted(views)])
    if missing:
        listed = ", ".join(f"{v.name} ({source_path(v)})" for v in missing)
        raise FeatureStoreError(f"no data yet for {listed}; run the stage that writes it, or ask for "
                                "other features (--feature view:feature)")
    base = _entity_frame(entities).with_row_index(ROW)
    out = base
    for regenerated in (False, True):
        group = [r for r in refs if _is_regenerated(by_name[r.split(":")[0]]) == regenerated]
        if not group:
            continue
        keys = sorted({k for v in {r.split(":")[0] for r in group} for k in by_name[v].join_keys})
        absent = [k for k in keys if k not in base.columns]
        if absent:
            raise FeatureStoreError(f"the entity frame lacks join key column(s) {absent} "
                                    f"needed by {sorted({r.split(':')[0] for r in group})}")
        entity_df = base.select(ROW, "event_timestamp", *keys).to_pandas()
        job = store.get_historical_features(entity_df=entity_df, features=group, full_feature_names=True,
                                            filter_by_created_timestamp=regenerated)
        got = pl.from_arrow(job.to_arrow())
        feature_cols = [c for c in got.columns if "__" in c and c != ROW]
        out = _attach(out, got.select(pl.col(ROW).cast(pl.UInt32), *feature_cols))
    columns = [*entities.columns, *(r.replace(":", "__", 1) for r in refs)]
    out = out.select(columns)
    # DuckDB may name the zone Etc/UTC: the same instants, one spelling.
    return out.with_columns(pl.col(c).dt.convert_time_zone("UTC") for c, t in out.schema.items()
                            if isinstance(t, pl.Datetime) and t.time_zone is not None)


def _attach(out: pl.DataFrame, got: pl.DataFrame) -> pl.DataFrame:
    """`got`'s feature columns beside `out`'s rows, matched on ROW.

    The ASOF store answers in the entity frame's order (the columns are then set beside); the
    stock store's order is unspecified (then a join).
    """
    if got.height == out.height and got[ROW].equals(out[ROW]):
        return out.hstack(got.drop(ROW))
    return out.join(got, on=ROW, how="left").sort(ROW)


@dataclass(frozen=True)
class MaterializeReport:
    """Which views were loaded in full, incrementally, or wait for their table; up to when."""

    fresh: tuple[str, ...]
    incremental: tuple[str, ...]
    waiting: tuple[str, ...]
    end: datetime
    windows: int = 0

    def one_line(self) -> str:
        """Figures for the command line and the stage report."""
        line = (f"materialized {len(self.fresh) + len(self.incremental)} views "
                f"({len(self.fresh)} full, {len(self.incremental)} incremental; {self.windows} windows) "
                f"up to {self.end:%Y-%m-%d %H:%M:%S} UTC")
        if self.waiting:
            line += f"; no data yet: {', '.join(sorted(self.waiting))}"
        return line


def _time_range(view: FeatureView) -> tuple[datetime, datetime] | None:
    ts = view.batch_source.timestamp_field
    row = pl.scan_parquet(source_path(view)).select(pl.col(ts).min().alias("lo"),
                                                   pl.col(ts).max().alias("hi")).collect()
    lo, hi = row["lo"][0], row["hi"][0]
    if lo is None:
        return None
    return (lo if lo.tzinfo else lo.replace(tzinfo=UTC)), (hi if hi.tzinfo else hi.replace(tzinfo=UTC))


def superseded_before(view: FeatureView) -> datetime | None:
    """The earliest of the entities' latest event times: every row before it has a later row of its
    own entity, so the online store (the latest value per entity) never needs it. A daily user
    table starts at its last day instead of its first (20,000 rows instead of 280,000 at the demo
    size); a table of one row per entity (item_content) starts at its first row, as before."""
    ts = view.batch_source.timestamp_field
    keys = [c.name for c in view.entity_columns]
    if not keys:
        return None
    lo = (pl.scan_parquet(source_path(view)).group_by(keys).agg(pl.col(ts).max())
          .select(pl.col(ts).min()).collect().item())
    if lo is None:
        return None
    return lo if lo.tzinfo else lo.replace(tzinfo=UTC)


def _written_since(view: FeatureView, since: datetime) -> datetime | None:
    """The earliest event time among the rows created after `since`; None if none (or no column)."""
    created = view.batch_source.created_timestamp_column
    if not created:
        return None
    ts = view.batch_source.timestamp_field
    scan = pl.scan_parquet(source_path(view))
    stamp = pl.col(created)
    if scan.collect_schema()[created].time_zone is None:  # naive times are UTC, as everywhere
        stamp = stamp.dt.replace_time_zone("UTC")
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    lo = scan.filter(stamp > since).select(pl.col(ts).min()).collect().item()
    if lo is None:
        return None
    return lo if lo.tzinfo else lo.replace(tzinfo=UTC)


def slice_bounds(view: FeatureView, start: datetime, end: datetime, rows: int) -> list[datetime]:
    """Window edges from `start` to `end`, each window holding about `rows` of the view's rows.

    The edges are every `rows`-th event time of the rows in [start, end] (read as one column,
    sorted); rows sharing one event time stay in one window, so a window can exceed `rows`
    only by rows of the same instant. One window when the range holds no more than `rows`.
    """
    ts = view.batch_source.timestamp_field
    stamp = pl.col(ts)
    scan = pl.scan_parquet(source_path(view))
    zone = scan.collect_schema()[ts].time_zone  # naive times are UTC, as everywhere
    stamp = stamp.dt.replace_time_zone("UTC") if zone is None else stamp.dt.convert_time_zone("UTC")
    times = (scan.select(stamp.alias("t")).filter(pl.col("t").is_between(start, end))
             .sort("t").gather_every(rows, offset=rows).collect()["t"].unique(maintain_order=True))
    inner = [t for t in times.to_list() if start < t < end]
    return [start, *inner, end]


# progress(view, window, windows): called before each window Feast loads (1-based)
Progress = Callable[[str, int, int], None]


def _materialize_sliced(store: FeatureStore, view: FeatureView, start: datetime, end: datetime,
                        rows: int, progress: Progress | None = None) -> int:
    """Feast's materialize of one view over [start, end], one window after another, oldest first.

    Feast pulls the latest row per entity of each window and upserts it, so a later window
    overwrites an entity's value from an earlier one: after the last window the online store
    holds the latest value of the whole range, as one call would, but no step ever holds more
    than a window (the one-call pull of a 599k-item catalogue took 8 GB). Windows share their
    edges (Feast's bounds are inclusive): a row on an edge is written twice, never skipped.
    Feast's own output (a banner and a progress bar per window) is swallowed: `progress` reports.
    Returns the number of windows.
    """
    edges = slice_bounds(view, start, end, rows)
    for n, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False), start=1):
        if progress is not None:
            progress(view.name, n, len(edges) - 1)
        feast_output = io.StringIO()
        with contextlib.redirect_stdout(feast_output), contextlib.redirect_stderr(feast_output):
            store.materialize(start_date=lo, end_date=hi, feature_views=[view.name])
    return len(edges) - 1


def materialize(store: FeatureStore, end: datetime | None = None, views: list[str] | None = None,
                slice_rows: int | None = None, progress: Progress | None = None) -> MaterializeReport:
    """Load the latest value per entity into the online store (all online views, or `views`).

    A view never materialized is loaded from its first row (Feast's incremental start, now minus
    TTL, would skip historical logs such as KuaiLive-M3's); afterwards only what is new since the
    last run: rows whose event time is after its end and rows created after it (a rebuilt mart,
    restated reasoning), which with historical logs have event times long before it. Either
    start is raised to `superseded_before` (no row before it is any entity's latest).
    Each view is loaded in windows of about `slice_rows` rows (features.materialize_slice_rows)
    so memory stays bounded whatever the table's size. Views whose parquet does not exist yet
    are reported as waiting. `progress(view, window, windows)` hears of each window.
    """
    from rgcd.config import FeaturesConfig

    rows = slice_rows or FeaturesConfig().materialize_slice_rows
    online = [v for v in store.list_feature_views() if v.online and (views is None or v.name in views)]
    waiting = missing_sources(online)
    ready = [v for v in online if v not in waiting]
    ranges = {v.name: _time_range(v) for v in ready}
    latest = max((r[1] for r in ranges.values() if r), default=None)
    if end is None:
        now = datetime.now(UTC)
        end = max(now, latest + timedelta(seconds=1)) if latest else now
    fresh = [v for v in ready if not v.materialization_intervals and ranges[v.name]]
    incremental = [v for v in ready if v.materialization_intervals]
    starts = {v.name: ranges[v.name][0] for v in fresh}
    for v in incremental:
        last_end = max(e for _, e in v.materialization_intervals)
        since = _written_since(v, last_end)  # rows rewritten since, with older event times
        starts[v.name] = last_end if since is None else min(since, last_end)
    for v in [*fresh, *incremental]:
        floor = superseded_before(v)  # rows before it would be overwritten by their own entity's
        if floor is not None:
            starts[v.name] = max(starts[v.name], floor)
    windows = sum(_materialize_sliced(store, v, min(starts[v.name], end), end, rows, progress)
                  for v in [*fresh, *incremental])
    return MaterializeReport(tuple(v.name for v in fresh), tuple(v.name for v in incremental),
                             tuple(v.name for v in waiting), end, windows)


def materialize_views(ws: Workspace, settings: Settings, views: list[str]) -> str:
    """Bring the online store up to date for `views` after a stage wrote their tables; one line.

    Every stage that writes a Feast view's table (reason, transfer, publish, a room going on air)
    calls this itself, so online reads never wait for the next `features` stage. Views that are
    offline only (e.g. pair_reasoning) are named and left alone; a workspace without a registry
    gets a line starting with `skipped: `, since there is no online store to update yet.
    """
    if not (ws.feast / "registry.db").exists():
        return f"skipped: no Feast registry in {ws.feast} (run `rgcd features apply`)"
    store = feature_store(ws, settings)
    by_name = {v.name: v for v in store.list_feature_views()}
    unknown = sorted(set(views) - set(by_name))
    if unknown:
        raise FeatureStoreError(f"unknown feature views {unknown}; run `rgcd features apply`")
    online = [v for v in views if by_name[v].online]
    offline = [v for v in views if not by_name[v].online]
    line = ""
    if online:
        with contextlib.redirect_stdout(io.StringIO()):  # Feast prints a progress line per view
            line = materialize(store, views=online,
                               slice_rows=settings.features.materialize_slice_rows).one_line()
    if offline:
        line += ("; " if line else "") + f"offline only: {', '.join(offline)}"
    return line


def online_features(store: FeatureStore, service: str, entity_rows: dict[str, list]) -> pl.DataFrame:
    """Online features of a service for entity rows (columns of equal length), one row per input."""
    fs = store.get_feature_service(service)
    response = store.get_online_features(features=fs, entity_rows=_rows(entity_rows), full_feature_names=True)
    return pl.DataFrame(response.to_dict(), strict=False)


def ranker_features(store: FeatureStore, user_id: int, item_ids: list[str]) -> pl.DataFrame:
    """What the `ranker` service answers for one user and candidate items (one row per item, the user's
    features on each), read as `ranker_user` (one row) and `ranker_items` (one row per item): the user's
    features are read and converted once, not once per candidate."""
    user = online_features(store, "ranker_user", {"user_id": [user_id]})
    items = online_features(store, "ranker_items", {"item_id": list(item_ids)})
    return pl.concat([user[[0] * items.height], items], how="horizontal")


def _rows(columns: dict[str, list]) -> list[dict]:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        sizes = {k: len(v) for k, v in columns.items()}
        raise FeatureStoreError(f"entity columns differ in length: {sizes}")
    n = lengths.pop()
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


# Feast's feature server routes that write (anyone reaching them could replace what rankers read) and
# its chat (a placeholder UI and websocket); `rgcd features serve` removes both unless asked for.
FEAST_WRITE_ROUTES = ("/push", "/write-to-online-store", "/materialize", "/materialize-incremental")
FEAST_CHAT_ROUTES = ("/chat", "/ws/chat", "/static")
# FastAPI's documentation pages load their scripts from a CDN; /openapi.json stays
FEAST_CDN_PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc")
# Feast's online read answered as protobuf (see `_add_protobuf_read`)
PROTOBUF_READ_ROUTE = "/get-online-features/protobuf"
PROTOBUF_MEDIA_TYPE = "application/x-protobuf"


def restrict_feast_app(app, token: str | None, ws: Workspace, settings: Settings, expose_writes: bool = False,
                       expose_chat: bool = False, store: FeatureStore | None = None):
    """Feast's feature-server app (`feast.feature_server.get_app`) as `rgcd features serve` runs it:
    write routes and chat removed unless exposed, and then behind the write token (rgcd.access);
    no CDN documentation pages. Reads (/get-online-features, /search, /health, ...) stay open; with
    the app's `store`, the online read is also answered as protobuf (`_add_protobuf_read`)."""
    from rgcd.access import WriteGuard

    removed = set(FEAST_CDN_PAGES)
    if not expose_writes:
        removed |= set(FEAST_WRITE_ROUTES)
    if not expose_chat:
        removed |= set(FEAST_CHAT_ROUTES)
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", "") not in removed]
    # what is served of them needs the token; what is not answers 404 like any unknown route
    guarded = (FEAST_WRITE_ROUTES if expose_writes else ()) + (FEAST_CHAT_ROUTES if expose_chat else ())

    def is_write(method: str, path: str) -> bool:
        return path in guarded or (expose_chat and path.startswith("/static/"))

    app.add_middleware(WriteGuard, token=token, is_write=is_write, token_env=settings.serving.write_token_env)
    _answer_errors_in_one_shape(app, ws, settings)
    if store is not None:
        _add_protobuf_read(app, store)
    return app


def _add_protobuf_read(app, store: FeatureStore) -> None:
    """POST /get-online-features/protobuf: Feast's online read, Feast's request body, answered with the
    `GetOnlineFeaturesResponse` protobuf (feast/serving/ServingService.proto, what Feast's gRPC server
    sends) instead of JSON. Measured on a ranker read of 1 user + 200 items with two 64-d vectors
    each (benchmarks/feast_online.py, breakdown): Feast's JSON costs ~36 ms of CPU per read between
    server and client (its dicts, `json.dumps`, the client's parse; 662 KB), the protobuf under 1 ms
    (156 KB). Feast's own gRPC server is not used: it serves Push and WriteToOnlineStore to anyone who
    reaches it, in one process."""
    from fastapi import Response
    from fastapi.concurrency import run_in_threadpool
    from feast.feature_server import GetOnlineFeaturesRequest, _get_features

    async def get_online_features_protobuf(request: GetOnlineFeaturesRequest) -> Response:
        features = await _get_features(request, store)  # Feast's own checks of the request
        response = await run_in_threadpool(lambda: store.get_online_features(
            features=features, entity_rows=request.entities, full_feature_names=request.full_feature_names))
        return Response(response.proto.SerializeToString(), media_type=PROTOBUF_MEDIA_TYPE)

    # FastAPI reads the body's model from the annotations; under `from __future__ import annotations`
    # they are strings naming what is imported in this function, which FastAPI cannot resolve
    get_online_features_protobuf.__annotations__ = {"request": GetOnlineFeaturesRequest, "return": Response}
    app.add_api_route(PROTOBUF_READ_ROUTE, get_online_features_protobuf, methods=["POST"],
                      response_class=Response, responses={200: {"content": {PROTOBUF_MEDIA_TYPE: {}}}},
                      summary="Feast's online read, answered as a GetOnlineFeaturesResponse protobuf")


# What Feast's read routes raise on a request that names what does not exist or sends the wrong types
# (an unknown feature, a missing join key, a list where a key goes): the client's fault, not the server's.
_CLIENT_FAULTS = (KeyError, ValueError, TypeError)


def _answer_errors_in_one_shape(app, ws: Workspace, settings: Settings) -> None:
    """Feast's handlers answer {"detail"} or, for any exception that is not a FeastError, a 500 whose
    body is `str(exc)`; here every error is {"error", "message"} as `rgcd serve` answers it: a 4xx for
    the client's fault, its message without paths or URIs, and a 500 that says only where details are."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from feast.errors import FeastError
    from starlette.exceptions import HTTPException

    from rgcd.redaction import UNEXPECTED, public_message

    def answer(status: int, kind: str, message: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={
            "error": kind, "message": UNEXPECTED if status >= 500 else public_message(message, ws, settings)})

    async def on_exception(request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        if isinstance(exc, FeastError):
            return answer(exc.http_status_code(), type(exc).__name__, str(exc))
        if isinstance(exc, _CLIENT_FAULTS):
            detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
            return answer(422, "BadRequest", detail)
        return answer(500, "InternalError", "")

    async def on_invalid(request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                             for e in exc.errors())
        return answer(422, "BadRequest", f"{problems} (see GET /openapi.json for the body)")

    async def on_http(request, exc: HTTPException) -> JSONResponse:
        kinds = {404: "NotFound", 405: "MethodNotAllowed"}
        message = (f"no route {request.method} {request.url.path[:100]}; the routes are in GET /openapi.json"
                   if exc.status_code in kinds else str(exc.detail))
        return answer(exc.status_code, kinds.get(exc.status_code, "HTTPError"), message)

    app.exception_handlers[Exception] = on_exception
    app.exception_handlers[RequestValidationError] = on_invalid
    app.exception_handlers[HTTPException] = on_http


def serve(ws: Workspace, settings: Settings, host: str = "127.0.0.1", port: int = 6566,
          workers: int | None = None, expose_writes: bool = False, expose_chat: bool = False) -> None:
    """Run Feast's HTTP feature server in the foreground (gunicorn; stop it with SIGTERM).

    Workers: `workers`, else features.serve_workers, else one per CPU core. Every worker checks
    the registry file every features.registry_refresh_s seconds and re-reads it only if changed.
    Feast's write routes and chat are left out unless `expose_writes` / `expose_chat`, which need
    the write token (serving.write_token_env): see `restrict_feast_app` and docs/security.md.
    """
    from unittest import mock

    from feast import feature_server

    from rgcd.access import write_token
    from rgcd.featurestore.online import RegistryWatchingStore, default_workers

    token = write_token(ws, settings)
    if (expose_writes or expose_chat) and token is None:
        raise FeatureStoreError(f"exposing Feast's write or chat routes needs a write token: set "
                                f"${settings.serving.write_token_env} (or serving.write_token_file) first; "
                                "see docs/security.md")
    if not registry_file(ws).exists():
        raise FeatureStoreError(f"no Feast registry in {ws.feast}; run `rgcd features apply` first")
    check_sealed(ws)
    write_runtime_yaml(ws, settings)
    _control_socket_inside(ws)
    store = RegistryWatchingStore(repo_path=str(ws.feast))
    store.ready_to_serve()  # before gunicorn forks: every worker starts with the plans built, frozen
    f = settings.features
    feast_get_app = feature_server.get_app

    def get_app(store, registry_ttl_sec):  # Feast's server builds its app through this name
        return restrict_feast_app(feast_get_app(store, registry_ttl_sec), token, ws, settings, expose_writes,
                                  expose_chat, store)

    with mock.patch.object(feature_server, "get_app", get_app):
        feature_server.start_server(
            store, host=host, port=port, no_access_log=True,
            workers=workers or f.serve_workers or default_workers(), worker_connections=1000, max_requests=0,
            max_requests_jitter=0, keep_alive_timeout=30, registry_ttl_sec=f.registry_refresh_s,
            tls_key_path="", tls_cert_path="", metrics=False)


def _control_socket_inside(ws: Workspace) -> None:
    """gunicorn's control socket in <ws>/feast, not $HOME/.gunicorn (off if the path is too long).

    Feast's start_server passes no such option, so the setting's default is what gunicorn uses.
    """
    import gunicorn.config

    path = ws.feast / "gunicorn.ctl"
    if len(str(path)) < 100:  # a unix socket path is limited to 108 bytes
        gunicorn.config.ControlSocket.default = str(path)
    else:
        gunicorn.config.ControlSocketDisable.default = True
