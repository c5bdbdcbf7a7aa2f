"""Claim: a point-in-time training frame through Feast, with the ASOF offline store plugin, costs at
most 1.5x the time and 2x the peak memory of a raw DuckDB ASOF JOIN; Feast's stock store, many times.

All read the same parquet and answer the same entity rows with the same rule (the latest row at
or before the request time, null once older than the view's TTL; regenerated views only rows
written by then). Two scopes:

- `view`: one view, `user_features_daily` (the contract's 32 feature columns, one snapshot per user
  and day, TTL 30 days), entity rows (user_id, event_timestamp);
- `service`: the whole `training` service: that view plus item_content, item_reasoning and
  item_embeddings (two 32-d vectors), entity rows (user_id, item_id, event_timestamp).

Measured side by side, each run in a fresh process (time and peak RSS of that process):

- `asof`: hand-written DuckDB `ASOF LEFT JOIN`s + the TTL as a CASE, parquet in, arrow out (the peer);
- `plugin`: `rgcd.featurestore.store.frame` (polars in, polars out; Feast's get_historical_features)
  with `features.offline_store: asof`, the default (rgcd/featurestore/offline_store.py);
- `stock`: the same with `features.offline_store: duckdb`, Feast's own DuckDB offline store.

The frames are checked equal.

    python benchmarks/feast_frames.py                      # 100k and 1M entity rows, both scopes
    python benchmarks/feast_frames.py --rows 100000 --repeats 1

Writes benchmarks/results/feast_frames.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from results_format import write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "feast_frames.json"
START = datetime(2025, 1, 1, tzinfo=UTC)
VIEW = "user_features_daily"


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS:")


def _peak_mb() -> float:
    # VmHWM belongs to this process's address space; ru_maxrss would carry the parent's peak
    # across fork + exec.
    return _status_mb("VmHWM:")


def build_world(ws_root: Path, users: int, days: int, items: int, dim: int, seed: int) -> dict[str, int]:
    """Write the tables (random values; only sizes and types matter), apply the repo.

    Returns each training view's TTL in days (0: none), for the raw peer, which imports no Feast.
    """
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests" / "feature_repo"))
    from feast_marts import CONTRACT_MARTS, write_feature_data, write_mart

    from rgcd.config import Settings, Workspace
    from rgcd.featurestore import store as fs

    rng = np.random.default_rng(seed)
    ws = Workspace(ws_root).ensure()
    n = users * days
    snap = [START + timedelta(days=d + 1) for d in range(days)]
    rows: dict[str, list] = {
        "user_id": np.repeat(np.arange(users), days).tolist(),
        "event_timestamp": snap * users, "created_timestamp": snap * users,
    }
    for name, dtype in CONTRACT_MARTS[VIEW]["columns"]:
        if name in rows:
            continue
        if dtype == "bigint":
            rows[name] = rng.integers(0, 1000, n).tolist()
        elif dtype == "double":
            rows[name] = rng.random(n).tolist()
        elif dtype == "varchar":
            rows[name] = rng.choice(["food", "games", "music", "sport"], n).tolist()
        elif dtype == "boolean":
            rows[name] = (rng.random(n) < 0.3).tolist()
    write_mart(ws.marts, VIEW, rows)
    # Items: one row each, written when known (so the created cut of regenerated views keeps them).
    ids = [f"photo:{i}" for i in range(items)]
    known = [START + timedelta(hours=int(h)) for h in rng.integers(0, 24 * days, items)]
    at = {"event_timestamp": known, "created_timestamp": known}
    write_mart(ws.marts, "item_content", {
        "item_id": ids, "domain": ["photo"] * items, "source_id": list(range(items)),
        "author_id": rng.integers(0, 5000, items).tolist(), "title": [f"video {i}" for i in range(items)],
        "category_l1": rng.choice(["food", "games", "music"], items).tolist(),
        "duration_ms": rng.integers(1000, 60000, items).tolist(), **at})
    write_feature_data(ws.feature_data, "item_reasoning", {
        "item_id": ids, "vertical_domain": rng.choice(["food", "games"], items).tolist(),
        "key_subject": [f"subject {i % 97}" for i in range(items)],
        "content_theme": [f"theme {i % 13}" for i in range(items)], "teacher_id": ["metadata"] * items,
        "prompt_version": ["v1"] * items, **at})
    write_feature_data(ws.feature_data, "item_embeddings", {
        "item_id": ids, "domain": ["photo"] * items,
        "transferable": rng.standard_normal((items, dim), dtype=np.float32).tolist(),
        "residual": rng.standard_normal((items, dim), dtype=np.float32).tolist(),
        "model_version": ["bench-1"] * items, **at})
    # Other marts of the repo are not read by these frames; apply needs no data.
    fs.apply(ws, Settings())
    store = fs.feature_store(ws, Settings())
    return {v: (store.get_feature_view(v).ttl.days if store.get_feature_view(v).ttl else 0)
            for v, _, _ in SERVICE}


def write_entities(path: Path, rows: int, users: int, days: int, items: int, seed: int) -> None:
    """Entity rows: random users and items (5% unknown) at random request times over the span."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed + rows)
    span_s = (days + 2) * 86_400
    times = np.datetime64(START.replace(tzinfo=None), "us") + (rng.integers(0, span_s, rows)
                                                                 .astype("timedelta64[s]"))
    pl.DataFrame({"user_id": rng.integers(0, users + users // 20, rows),
                  "item_id": [f"photo:{i}" for i in rng.integers(0, items + items // 20, rows)],
                  "event_timestamp": pl.Series(times).dt.replace_time_zone("UTC")}).write_parquet(path)


def _columns(path: Path, drop: tuple[str, ...]) -> list[str]:
    import polars as pl

    return [c for c in pl.read_parquet_schema(path) if c not in drop]


# (view, table folder, feature columns to skip, TTL-in-days key) of the training service, in order
SERVICE = (
    (VIEW, "marts", ("user_id",)),
    ("item_content", "marts", ("item_id",)),
    ("item_reasoning", "feature_data", ("item_id",)),
    ("item_embeddings", "feature_data", ("item_id", "domain")),
)
_TIMES = ("event_timestamp", "created_timestamp")


def _service_refs(ws_root: Path, scope: str, with_registry: bool) -> list[tuple[str, Path, list[str]]]:
    """(view, parquet, features) for the scope. The service's features are the ones the training
    service declares (read from the registry, or from <work>/service.json for the raw peer)."""
    views = SERVICE[:1] if scope == "view" else SERVICE
    declared_file = ws_root.parent / "service.json"
    if scope == "service" and with_registry:
        from rgcd.config import Settings, Workspace
        from rgcd.featurestore import store as fs

        store = fs.feature_store(Workspace(ws_root), Settings())
        declared = {p.name: [f.name for f in p.features]
                    for p in store.get_feature_service("training").feature_view_projections}
        declared_file.write_text(json.dumps(declared))
    elif scope == "service":
        declared = json.loads(declared_file.read_text())
    out = []
    for view, folder, skip in views:
        path = ws_root / folder / f"{view}.parquet"
        feats = _columns(path, (*skip, *_TIMES))
        if scope == "service":
            feats = [f for f in declared[view] if f in feats]
        out.append((view, path, feats))
    return out


def _raw_asof_sql(refs: list[tuple[str, Path, list[str]]], ttls: dict[str, int]) -> str:
    """The peer: one ASOF LEFT JOIN per view over the parquet, TTL as a CASE (days; 0: none)."""
    cols, joins = [], []
    for i, (view, path, feats) in enumerate(refs):
        key = "user_id" if view == VIEW else "item_id"
        alive = (f"f{i}.event_timestamp >= e.event_timestamp - INTERVAL {ttls[view]} DAY" if ttls[view]
                 else f"f{i}.event_timestamp IS NOT NULL")
        cols += [f"CASE WHEN {alive} THEN f{i}.{c} END AS {view}__{c}" for c in feats]
        joins.append(f"ASOF LEFT JOIN read_parquet('{path}') f{i} ON e.{key} = f{i}.{key} "
                     f"AND e.event_timestamp >= f{i}.event_timestamp")
    return f"SELECT e.* EXCLUDE (row), {', '.join(cols)} FROM ent e {' '.join(joins)} ORDER BY e.row"


def one(method: str, scope: str, ws_root: Path, entities: Path, out: Path | None,
        ttls: dict[str, int]) -> dict:
    """One measurement in this (fresh) process."""
    import duckdb
    import polars as pl

    refs = _service_refs(ws_root, scope, with_registry=method != "asof")
    ent = pl.read_parquet(entities)
    if scope == "view":
        ent = ent.drop("item_id")
    store = None
    if method in ("plugin", "stock"):
        from rgcd.config import Settings, Workspace
        from rgcd.featurestore import store as fs

        settings = Settings.model_validate({"features": {"offline_store": "asof" if method == "plugin"
                                                         else "duckdb"}})
        store = fs.feature_store(Workspace(ws_root), settings)
        store.list_feature_views()  # registry read outside the timing
        kind = type(store._get_provider().offline_store).__name__
        assert kind == ("AsofOfflineStore" if method == "plugin" else "DuckDBOfflineStore"), kind
    base = _rss_mb()
    t0 = time.perf_counter()
    if method == "asof":
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.register("ent", ent.with_row_index("row").to_arrow())
        got = pl.from_arrow(con.sql(_raw_asof_sql(refs, ttls)).to_arrow_table())
    elif method in ("plugin", "stock"):
        from rgcd.featurestore import store as fs

        features = [f"{view}:{c}" for view, _, feats in refs for c in feats]
        got = fs.frame(store, ent, service=None, features=features)
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - t0
    # DuckDB may name the zone Etc/UTC, Feast UTC: the same instants.
    got = got.with_columns(pl.col("event_timestamp").dt.convert_time_zone("UTC"))
    result = {"seconds": seconds, "peak_rss_mb": _peak_mb(), "rss_before_mb": base, "rows": got.height}
    if out is not None:
        got.write_parquet(out)
    return result


def _child(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


METHODS = ("plugin", "asof", "stock")  # plugin first: it leaves service.json for the raw peer


def _equal(frames: dict) -> bool:
    import polars as pl
    from polars.testing import assert_frame_equal

    want = frames["asof"]
    for m, got in frames.items():
        try:  # the raw join's float lists come back as float32, like Feast's; compare values
            assert_frame_equal(got, want.select(got.columns), check_dtypes=False)
        except AssertionError as err:
            print(f"frame of {m} differs: {str(err)[:300]}", file=sys.stderr)
            return False
    return isinstance(want, pl.DataFrame)


def _write(args, load_before: float, ttls: dict, sizes: list[dict]) -> None:
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine_detail": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_avg_1m_at_start": load_before,
                    "load_avg_1m_at_end": os.getloadavg()[0],
                    "note": "a 2-core machine shared by eight engineers' jobs while measured"},
        "world": {"users": args.users, "days": args.days, "feature_rows": args.users * args.days,
                  "items": args.items, "vector_dim": args.dim, "ttl_days": ttls},
        "goal_at_1m": "plugin <= 1.5x the raw ASOF JOIN's time and <= 2x its peak memory",
        "sizes": sizes,
    }
    # the headline: the largest frame, the training service where it was measured
    top = max(sizes, key=lambda s: (s["entity_rows"], s["scope"] == "service"))
    secs, peak = top["seconds_best"], top["peak_rss_mb"]
    write_result(
        RESULTS, figures=result,
        claim=("PIT training frames: Feast with the ASOF offline store plugin vs Feast's stock DuckDB "
               "store vs a raw DuckDB ASOF JOIN, same parquet"),
        headline=(f"{top['entity_rows']:,} entity rows, {top['scope']} ({top['features']} features): "
                  f"Feast + ASOF plugin {secs['plugin']:.1f} s, {peak['plugin']:,.0f} MB"),
        peer=(f"hand-written DuckDB ASOF JOINs over the same parquet: {secs['asof']:.1f} s, "
              f"{peak['asof']:,.0f} MB"),
        ratio=f"{top['time_plugin_over_asof']}x time, {top['memory_plugin_over_asof']}x memory",
        machine=(f"{os.cpu_count()} cores, Python {platform.python_version()}, load {load_before:.0f} at the "
                 f"start, {os.getloadavg()[0]:.0f} at the end"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=50)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--scopes", nargs="+", default=["view", "service"], choices=["view", "service"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stock-max-rows", type=int, default=None,
                        help="run Feast's stock store only up to this many entity rows (its 1M-row "
                             "frame needs ~8 GB; leave it out on a machine without the memory)")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder to keep and reuse (the world is built once)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--scope", help=argparse.SUPPRESS)
    parser.add_argument("--ws", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--entities", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ttls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.scope, args.ws, args.entities, args.out,
                             json.loads(args.ttls))))
        return

    import polars as pl

    work = args.work or Path(tempfile.mkdtemp(prefix="rgcd-bench-frames-"))
    load_before = os.getloadavg()[0]
    try:
        t = time.perf_counter()
        if args.work and (work / "ttls.json").exists():
            ttls = json.loads((work / "ttls.json").read_text())
        else:
            ttls = build_world(work / "ws", args.users, args.days, args.items, args.dim, args.seed)
            (work / "ttls.json").write_text(json.dumps(ttls))
        print(f"world: {args.users} users x {args.days} daily snapshots, {args.items} items, applied in "
              f"{time.perf_counter() - t:.1f}s", file=sys.stderr)
        sizes = []
        for rows in args.rows:
            entities = work / f"entities_{rows}.parquet"
            if not entities.exists():
                write_entities(entities, rows, args.users, args.days, args.items, args.seed)
            methods = [m for m in METHODS if m != "stock" or args.stock_max_rows is None
                       or rows <= args.stock_max_rows]
            for scope in args.scopes:
                runs: dict[str, list[dict]] = {}
                for rep in range(args.repeats):
                    for method in methods:  # interleaved: load on the shared machine hits each alike
                        out = work / f"{method}.parquet" if rep == 0 else None
                        extra = ["--out", str(out)] if out else []
                        got = _child(["--one", method, "--scope", scope, "--ws", str(work / "ws"),
                                      "--entities", str(entities), "--ttls", json.dumps(ttls), *extra])
                        got["load_avg_1m"] = os.getloadavg()[0]
                        runs.setdefault(method, []).append(got)
                        print(f"{rows:>9} {scope:<7} {method:<6} {got['seconds']:.2f}s peak "
                              f"{got['peak_rss_mb']:.0f} MB (load {got['load_avg_1m']:.1f})", file=sys.stderr)
                frames = {m: pl.read_parquet(work / f"{m}.parquet") for m in runs}
                best = {m: min(r["seconds"] for r in rs) for m, rs in runs.items()}
                peak = {m: max(r["peak_rss_mb"] for r in rs) for m, rs in runs.items()}
                sizes.append({
                    "entity_rows": rows, "scope": scope, "same_frame": _equal(frames),
                    "features": frames["asof"].width - frames["asof"].select(pl.col("^(user_id|item_id|"
                                                                                    "event_timestamp)$")).width,
                    "seconds_best": best,
                    "seconds_all": {m: [round(r["seconds"], 3) for r in rs] for m, rs in runs.items()},
                    "peak_rss_mb": peak,
                    "rss_before_mb": {m: rs[0]["rss_before_mb"] for m, rs in runs.items()},
                    "load_avg_1m": {m: [round(r["load_avg_1m"], 1) for r in rs] for m, rs in runs.items()},
                    "time_plugin_over_asof": round(best["plugin"] / best["asof"], 2),
                    "memory_plugin_over_asof": round(peak["plugin"] / peak["asof"], 2),
                    **({"time_stock_over_asof": round(best["stock"] / best["asof"], 2),
                        "memory_stock_over_asof": round(peak["stock"] / peak["asof"], 2),
                        "time_stock_over_plugin": round(best["stock"] / best["plugin"], 2)}
                       if "stock" in best else {"stock": "not run (--stock-max-rows)"}),
                })
                _write(args, load_before, ttls, sizes)  # after every size: a cut-short run keeps its figures
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    for s in sizes:
        b, p = s["seconds_best"], s["peak_rss_mb"]
        stock = f", stock {b['stock']:.2f}s/{p['stock']:.0f}MB" if "stock" in b else ""
        print(f"{s['entity_rows']:>9} rows {s['scope']:<7}: asof {b['asof']:.2f}s/{p['asof']:.0f}MB, plugin "
              f"{b['plugin']:.2f}s/{p['plugin']:.0f}MB ({s['time_plugin_over_asof']}x, "
              f"{s['memory_plugin_over_asof']}x mem){stock}; same frame: {s['same_frame']}")
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
