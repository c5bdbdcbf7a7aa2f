"""The warehouse stage: run the dbt project in `dbt/` over the workspace's lake.

dbt runs in this process through `dbtRunner` and prints its own progress lines. The DuckDB file
is `<workspace>/warehouse.duckdb`; the marts come out as parquet in `<workspace>/marts/`, so
nothing downstream opens the DuckDB file (DuckDB allows one writer, and a reader holding the file
makes `dbt build` fail to take its lock). dbt's artifacts and logs go to `<workspace>/dbt/`.

The marts folder never mixes two builds: `build` writes into a fresh `<ws>/marts.builds/<id>/`
and, once every model and test passed, switches `<ws>/marts` (a relative symlink) to it with one
rename. A failed or killed build leaves `marts` on the previous build, whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rgcd.atomic import fsync_path, temp_path_beside, write_json_atomic
from rgcd.config import Settings, Workspace
from rgcd.errors import RgcdError
from rgcd.faults import kill_point
from rgcd.memory import duckdb_limits
from rgcd.terminal import temporary_environment
from rgcd.transforms.contract import FILES

DBT_PROJECT = Path(__file__).resolve().parent.parent / "dbt"

# The warehouse settings of the behaviour-pair rule, passed to dbt as vars of the same names.
PAIR_RULE = ("pair_window_hours", "pair_plays_per_user_day", "pair_sessions_per_user_day",
             "pair_max_per_user_day", "pair_min_strength")

# The mart that says what the pair rule dropped; its totals go into the build's line.
PAIR_RULE_EFFECT = "behaviour_pair_rule_effect"

# dbt's node statuses that mean "this did not work"
_FAILED = {"error", "fail", "runtime error"}


class WarehouseError(RgcdError):
    """dbt could not run, or a model or test failed; the message says which and what to do."""


@dataclass
class BuildReport:
    """What one dbt invocation did."""

    command: str
    seconds: float
    statuses: Counter = field(default_factory=Counter)  # (resource type, status) -> count
    marts: dict[str, int] = field(default_factory=dict)  # mart -> rows in its parquet file
    failures: list[str] = field(default_factory=list)
    note: str = ""  # why this build did something other than asked (a forced full refresh)
    pair_rule: dict[str, int] = field(default_factory=dict)  # totals of behaviour_pair_rule_effect

    @property
    def success(self) -> bool:
        return not self.failures

    def count(self, resource_type: str) -> int:
        return sum(n for (kind, _), n in self.statuses.items() if kind == resource_type)

    def one_line(self) -> str:
        """One line of figures: nodes run, tests passed, rows per mart."""
        tests = self.count("test") + self.count("unit_test")
        failed = sum(n for (_, status), n in self.statuses.items() if status in _FAILED)
        warned = sum(n for (_, status), n in self.statuses.items() if status == "warn")
        marts = ", ".join(f"{name} {rows:,}" for name, rows in sorted(self.marts.items()))
        note = f" ({self.note})" if self.note else ""
        return (f"dbt {self.command}{note}: {self.count('model')} models, {tests} tests, {failed} failed, "
                f"{warned} warned in {self.seconds:.1f}s; mart rows: {marts or 'none'}"
                f"{self._pair_rule_line()}")

    def _pair_rule_line(self) -> str:
        r = self.pair_rule
        if not r:
            return ""
        return (f"; pair rule kept {r['kept_pairs']:,} of {r['candidate_pairs']:,} user-day pairs "
                f"({r['pairs_under_floor']:,} under the strength floor, {r['pairs_over_cap']:,} over the "
                f"per-user-day cap), {r['plays_over_cap']:,} of {r['valid_plays']:,} valid plays and "
                f"{r['sessions_over_cap']:,} of {r['sessions']:,} sessions past the daily caps")


def profiles_env(ws: Workspace, settings: Settings) -> dict[str, str]:
    """The environment dbt's profile (dbt/profiles.yml) reads."""
    limits = duckdb_limits(ws, settings)
    return {
        "RGCD_WORKSPACE": str(ws.root),
        "DBT_PROFILES_DIR": str(DBT_PROJECT),
        "RGCD_DBT_THREADS": str(settings.warehouse.threads),
        "RGCD_DBT_MEMORY_LIMIT": limits.memory_limit_sql,
        "RGCD_DBT_SPILL_FOLDER": str(limits.spill_folder),
    }


def dbt_vars(ws: Workspace, settings: Settings) -> dict[str, object]:
    """The project vars rgcd sets (every other var keeps its default in dbt_project.yml)."""
    return {
        "lake_path": str(ws.lake),
        "marts_path": str(ws.marts),
        **{name: getattr(settings.warehouse, name) for name in PAIR_RULE},
        "klm3_core": klm3_core(ws, settings),
    }


def klm3_core(ws: Workspace, settings: Settings) -> int:
    """klm3-cdr's k-core threshold: the benchmark's (warehouse.klm3_core) on real data, the one set for
    the demo world's density (demo.klm3_core) on a workspace that holds a synthetic world's latent truth."""
    from rgcd.transforms.latent import has_latent

    return settings.demo.klm3_core if has_latent(ws) else settings.warehouse.klm3_core


def check_lake(ws: Workspace) -> None:
    """Refuse to build over a lake that lacks a required table (after finishing a killed ingest)."""
    from rgcd.transforms.ingest import complete_interrupted_commit

    complete_interrupted_commit(ws)  # a lake half-renamed by a killed ingest is never built from
    for raw in FILES:
        if raw.required and not any(ws.lake_table(raw.stem).glob("**/*.parquet")):
            raise WarehouseError(
                f"the lake has no {raw.stem} table ({ws.lake_table(raw.stem)}): run "
                f"`rgcd --workspace {ws.root} ingest SRC` on a KuaiLive-M3 folder first")


def run_dbt(ws: Workspace, settings: Settings, command: str, *, full_refresh: bool = False,
            select: str | None = None, extra_vars: dict[str, object] | None = None,
            project: Path = DBT_PROJECT) -> BuildReport:
    """Run one dbt command (`build`, `run`, `test`, `docs generate`, ...) on the workspace.

    `project` is the dbt project folder (default: this repository's dbt/). Returns the report;
    raises WarehouseError with dbt's own messages when anything failed.
    """
    from dbt.cli.main import dbtRunner  # ~2 s import: only when a build is asked for

    ws.ensure()
    artifacts = ws.dbt_artifacts
    # --quiet: dbt's per-node lines go to <ws>/dbt/logs/dbt.log only; the terminal gets one
    # progress line (below) and the report's summary. Errors still print.
    args = [*command.split(), "--quiet", "--project-dir", str(project), "--profiles-dir", str(project),
            "--target-path", str(artifacts / "target"), "--log-path", str(artifacts / "logs"),
            "--vars", json.dumps({**dbt_vars(ws, settings), **(extra_vars or {})})]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        # only tests whose parents are all selected: a partial build must not test unbuilt models
        args += ["--select", select, "--indirect-selection", "cautious"]
    started = time.perf_counter()
    # dbt reads env_var() from os.environ
    with temporary_environment(profiles_env(ws, settings)), _node_progress(command) as on_event:
        try:
            result = dbtRunner(callbacks=[on_event]).invoke(args)
        finally:
            _release_warehouse()
    report = BuildReport(command=command, seconds=time.perf_counter() - started)
    for node_result in getattr(result.result, "results", None) or []:
        node = node_result.node
        status = str(node_result.status).lower()
        report.statuses[(str(node.resource_type), status)] += 1
        if status in _FAILED:
            report.failures.append(f"{node.resource_type} {node.name}: {node_result.message}")
        elif str(node.resource_type) == "model" and node.config.materialized == "external":
            marts = Path(str((extra_vars or {}).get("marts_path") or ws.marts))
            report.marts[node.name] = _parquet_rows(marts / f"{node.name}.parquet")
            if node.name == PAIR_RULE_EFFECT:
                report.pair_rule = _column_sums(marts / f"{node.name}.parquet")
    if result.exception is not None:
        report.failures.append(str(result.exception))
    elif not result.success and not report.failures:
        report.failures.append("dbt reported a failure; see its log lines above")
    if report.failures:
        message = "\n".join(report.failures)
        if "lock" in message.lower():
            message += (f"\nAnother process holds {ws.warehouse} open (a DuckDB shell, a notebook, "
                        "a server): close it and run again. Readers should use the parquet marts.")
        raise WarehouseError(f"dbt {command} failed:\n{message}")
    return report


@contextlib.contextmanager
def _node_progress(command: str):
    """A transient progress line counting dbt's finished nodes; yields the dbt event callback."""
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn(f"[bold]dbt {command}[/] {{task.description}}"),
                  MofNCompleteColumn(), TimeElapsedColumn(), transient=True) as progress:
        task = progress.add_task("parsing", total=None)

        def on_event(event) -> None:
            name = event.info.name
            if name == "FoundStats":  # "Found 14 models, 120 data tests, ..." before the run starts
                progress.update(task, description="running")
            elif name == "NodeStart":
                progress.update(task, description=event.data.node_info.node_name)
            elif name == "NodeFinished":
                progress.advance(task)

        yield on_event


def _release_warehouse() -> None:
    """Close the DuckDB file that dbt-duckdb keeps open in-process after `invoke` returns.

    dbt-duckdb caches one database environment per process (a class attribute), so without this
    the rest of `rgcd run`, or any long-lived process that built, would hold the warehouse lock.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            env.close()
        DuckDBConnectionManager.close_all_connections()


def _column_sums(path: Path) -> dict[str, int]:
    """Totals of every integer column of a small mart (the pair rule's daily figures)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: int(pc.sum(table[name]).as_py() or 0) for name in table.column_names
            if str(table.schema.field(name).type).startswith("int")}


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows if path.exists() else 0


def build(ws: Workspace, settings: Settings, *, full_refresh: bool = False,
          select: str | None = None) -> BuildReport:
    """`dbt build` over the workspace's lake: models, data tests and unit tests, marts as parquet.

    The incremental models keep the days they already hold, so when the vars rgcd passes (e.g.
    warehouse.pair_window_hours) differ from the last whole build's, this build is a full refresh:
    otherwise old days would keep the old setting and the marts would differ from a rebuild.
    """
    check_lake(ws)
    state = ws.dbt_artifacts / "last_build_vars.json"
    current = json.loads(json.dumps(dbt_vars(ws, settings)))
    previous = json.loads(state.read_text()) if state.exists() else None
    note = ""
    if not full_refresh and previous is not None and previous != current:
        changed = sorted(k for k in current.keys() | previous.keys() if current.get(k) != previous.get(k))
        full_refresh, note = True, f"full refresh: {', '.join(changed)} changed since the last build"
    build_dir = _new_build_dir(ws)
    try:
        report = run_dbt(ws, settings, "build", full_refresh=full_refresh, select=select,
                         extra_vars={"marts_path": str(build_dir)})
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    kill_point("build.before_switch")
    switch_marts(ws, build_dir)
    report.note = note
    if select is None:  # a partial build leaves other incremental models on the old vars
        write_json_atomic(current, state)
    return report


MART_BUILDS = "marts.builds"


def _new_build_dir(ws: Workspace) -> Path:
    """A fresh folder for this build's marts; every build folder but the live one is removed."""
    builds = ws.root / MART_BUILDS
    live = ws.marts.resolve() if ws.marts.is_symlink() else None
    if builds.exists():
        for old in builds.iterdir():
            if old.resolve() != live:  # the one before (kept for readers) or a killed build
                shutil.rmtree(old, ignore_errors=True)
    build = builds / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{time.time_ns() % 10**9:09d}"
    build.mkdir(parents=True)
    return build


def switch_marts(ws: Workspace, build: Path) -> None:
    """Point `<ws>/marts` at `build` with one rename; marts this build did not write come along.

    A `--select` build writes only some marts: the others are hard-linked from the current
    build, so the new one is whole. The previous build folder stays until the next build starts
    (readers that opened it finish). The warehouse's views over the marts are re-pointed to
    `<ws>/marts/`, so they follow the switch and never name another workspace's files.
    """
    link = ws.marts
    previous = link.resolve() if link.exists() else None
    if previous is not None:
        for f in previous.iterdir():
            if f.is_file() and not f.name.startswith(".") and not (build / f.name).exists():
                try:
                    os.link(f, build / f.name)
                except OSError:  # another filesystem, or links not allowed: copy
                    shutil.copy2(f, build / f.name)
    fsync_path(build)
    tmp = temp_path_beside(link)
    os.symlink(os.path.relpath(build, link.parent), tmp)  # relative: a copied workspace keeps its own
    aside = None
    if link.exists() and not link.is_symlink():  # a plain folder from before versioned builds
        aside = temp_path_beside(link)
        os.replace(link, aside)
    os.replace(tmp, link)
    fsync_path(link.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    _repoint_views(ws)


def _repoint_views(ws: Workspace) -> None:
    """Views dbt made over `marts.builds/<id>/x.parquet` read `<ws>/marts/x.parquet` instead."""
    import re

    import duckdb

    # a quoted SQL literal up to the build folder; a quote inside the path is doubled ('it''s ws')
    pattern = re.compile(r"'(?:[^']|'')*/" + re.escape(MART_BUILDS) + r"/[^/']+/")
    marts = "'" + str(ws.marts).replace("'", "''") + "/"
    con = duckdb.connect(str(ws.warehouse))
    try:
        views = con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall()
        for (sql,) in views:
            if pattern.search(sql):
                con.execute(pattern.sub(lambda _: marts, sql).replace(
                    "CREATE VIEW", "CREATE OR REPLACE VIEW", 1))
    finally:
        con.close()


def generate_docs(ws: Workspace, settings: Settings) -> Path:
    """`dbt docs generate`; returns the folder holding index.html, manifest.json and catalog.json."""
    run_dbt(ws, settings, "docs generate")
    return ws.dbt_artifacts / "target"
