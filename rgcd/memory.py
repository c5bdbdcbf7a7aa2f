"""Memory: the DuckDB limit and spill folder every DuckDB connection of a run uses, and peak RSS.

One place decides how much memory DuckDB may take (`warehouse.memory_limit_gb`, or
`warehouse.memory_fraction` of the machine's RAM when that is 0) and where it spills
(`warehouse.spill_folder`, inside the workspace). dbt gets them through its profile
(dbt/profiles.yml reads the environment `rgcd.warehouse.profiles_env` sets); every other
connection the project opens comes from `duckdb_connect`, and Feast's DuckDB offline store (ibis's
default backend) from `limit_ibis_backend`. DuckDB counts only its own buffers against the limit:
Python's objects are on top, which is why readers of large marts stream (docs/operations.md, Memory).

Peak RSS per stage: Linux keeps the process's high-water mark (VmHWM); writing "5" to
/proc/self/clear_refs resets it, so a stage's peak is the mark after the stage, reset before it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rgcd.config import Settings, Workspace

GIB = 1024**3


def machine_ram_bytes() -> int:
    """Total physical memory of this machine (cgroup limits are not looked at)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class DuckDBLimits:
    """What DuckDB may use: `memory_limit` in bytes and the folder it spills to."""

    memory_limit: int
    spill_folder: Path

    @property
    def memory_limit_sql(self) -> str:
        """The limit in DuckDB's syntax (whole MiB: DuckDB rounds anyway)."""
        return f"{self.memory_limit // 2**20}MiB"

    def describe(self) -> str:
        return f"DuckDB memory limit {self.memory_limit / GIB:.1f} GiB, spill to {self.spill_folder}"


def duckdb_limits(ws: Workspace, settings: Settings) -> DuckDBLimits:
    """The configured limit (or the configured fraction of RAM) and the spill folder, created."""
    cfg = settings.warehouse
    limit = (int(cfg.memory_limit_gb * GIB) if cfg.memory_limit_gb > 0
             else int(cfg.memory_fraction * machine_ram_bytes()))
    spill = ws.root / cfg.spill_folder
    spill.mkdir(parents=True, exist_ok=True)
    return DuckDBLimits(memory_limit=limit, spill_folder=spill)


def _config(limits: DuckDBLimits) -> dict[str, str]:
    # preserve_insertion_order=false lets DuckDB stream large results instead of buffering them.
    return {"memory_limit": limits.memory_limit_sql, "temp_directory": str(limits.spill_folder),
            "preserve_insertion_order": "false"}


def duckdb_connect(ws: Workspace, settings: Settings):
    """An in-memory DuckDB connection under the run's memory limit, spilling into the workspace."""
    import duckdb

    con = duckdb.connect(config=_config(duckdb_limits(ws, settings)))
    # after connecting: the setting needs ICU, which DuckDB loads on demand
    con.execute("SET TimeZone = 'UTC'").fetchall()
    return con


def duckdb_connect_like_feast():
    """A DuckDB connection under the limits Feast's backend was given (`limit_ibis_backend`, which
    `rgcd.featurestore.store.repo_config` calls), for code that holds a FeatureStore only."""
    import duckdb
    import ibis

    limits = getattr(ibis.options.default_backend, "_rgcd_limits", None)
    con = duckdb.connect(config=_config(limits)) if limits else duckdb.connect()
    con.execute("SET TimeZone = 'UTC'").fetchall()
    return con


def limit_ibis_backend(ws: Workspace, settings: Settings) -> None:
    """Make ibis's default DuckDB backend (what Feast's DuckDB offline store reads through) limited.

    Feast calls `ibis.read_parquet` on ibis's process-wide default backend, which would otherwise
    be an unlimited in-memory DuckDB; setting it is idempotent for one workspace.
    """
    import ibis

    limits = duckdb_limits(ws, settings)
    current = ibis.options.default_backend
    if getattr(current, "_rgcd_limits", None) == limits:
        return
    backend = ibis.duckdb.connect(**_config(limits))
    backend._rgcd_limits = limits  # marks which limits this backend was made with
    ibis.set_backend(backend)


# ---- peak RSS ------------------------------------------------------------------------------------

def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Start a new high-water mark of this process's RSS; False where the OS does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """This process's peak RSS since the last `reset_peak_rss` (or its start); None off Linux."""
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 or None
    return kib * 1024


def format_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / GIB:.2f} GiB" if n >= GIB / 4 else f"{n / 2**20:.0f} MiB"


# ---- the heap --------------------------------------------------------------------------------------

def trim_heap() -> None:
    """Hand the C heap's free memory back to the system (glibc's `malloc_trim`).

    After a pass of large numpy/torch temporaries, glibc keeps the freed blocks in its heap (its
    mmap threshold has risen past their size), so the process's RSS stays at the pass's peak:
    +0.55 GiB after stage 2 encoded the demo catalogue, 0.31 GiB of RSS again after a trim.
    A no-op where the C library is not glibc.
    """
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
