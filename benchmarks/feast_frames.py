"""Claim: a point-in-time training frame through Feast costs a stated factor over a raw DuckDB ASOF JOIN.

Both read the same parquet (a `user_features_daily` mart of the contract's 32 feature columns, one
snapshot per user and day) and answer the same entity rows (user_id, event_timestamp) with the
same rule: the latest snapshot at or before the request time, null once older than the view's TTL.
Measured side by side, each run in a fresh process (time and peak RSS of that process):

- `asof`: DuckDB `ASOF LEFT JOIN` + the TTL as a CASE, parquet in, arrow out (the peer);
- `window`: the plan Feast's DuckDB offline store builds (inner join on key and time window, then
  ROW_NUMBER() per entity row), written by hand in DuckDB SQL: the algorithm without Feast;
- `feast`: `rgcd.featurestore.store.frame` (polars in, polars out) over an applied store;
- `rgcd_asof`: `rgcd.featurestore.store.frame(..., engine="asof")`: the same definitions from Feast's
  registry, answered with DuckDB ASOF JOINs (ties on event time resolved first).

The frames are checked equal. At the largest size one Feast run is profiled (where its time goes).

    python benchmarks/feast_frames.py                      # 100k and 1M entity rows
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


def build_world(ws_root: Path, users: int, days: int, seed: int) -> tuple[int, int]:
    """Write the mart parquet (random values; only sizes and types matter), apply the repo.

    Returns (number of feature columns, the view's TTL in days).
    """
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests" / "feature_repo"))
    from feast_marts import CONTRACT_MARTS, write_mart

    from rgcd.config import Settings, Workspace
    from rgcd.featurestore import store as fs

    rng = np.random.default_rng(seed)
    ws = Workspace(ws_root).ensure()
    columns = CONTRACT_MARTS[VIEW]["columns"]
    n = users * days
    snap = [START + timedelta(days=d + 1) for d in range(days)]
    rows: dict[str, list] = {
        "user_id": np.repeat(np.arange(users), days).tolist(),
        "event_timestamp": snap * users, "created_timestamp": snap * users,
    }
    for name, dtype in columns:
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
    # Other marts of the repo are not read by these frames; apply needs no data.
    fs.apply(ws, Settings())
    ttl = fs.feature_store(ws, Settings()).get_feature_view(VIEW).ttl
    return len(columns) - 3, ttl.days


def write_entities(path: Path, rows: int, users: int, days: int, seed: int) -> None:
    """Entity rows: random users at random request times over the span (+2 days past the last)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed + rows)
    span_s = (days + 2) * 86_400
    times = np.datetime64(START.replace(tzinfo=None), "us") + (rng.integers(0, span_s, rows)
                                                                 .astype("timedelta64[s]"))
    pl.DataFrame({"user_id": rng.integers(0, users + users // 20, rows),  # 5% unknown users
                  "event_timestamp": pl.Series(times).dt.replace_time_zone("UTC")}).write_parquet(path)


def _features(ws_root: Path) -> list[str]:
    import polars as pl

    schema = pl.read_parquet_schema(ws_root / "marts" / f"{VIEW}.parquet")
    return [c for c in schema if c not in ("user_id", "event_timestamp", "created_timestamp")]


def one(method: str, ws_root: Path, entities: Path, out: Path | None, ttl_days: int) -> dict:
    """One measurement in this (fresh) process."""
    import duckdb
    import polars as pl

    feats = _features(ws_root)
    mart = ws_root / "marts" / f"{VIEW}.parquet"
    ent = pl.read_parquet(entities)
    store = None
    if method in ("feast", "rgcd_asof"):
        from rgcd.config import Settings, Workspace
        from rgcd.featurestore import store as fs

        store = fs.feature_store(Workspace(ws_root), Settings())
        store.list_feature_views()  # registry read outside the timing
    base = _rss_mb()
    t0 = time.perf_counter()
    if method == "asof":
        con = duckdb.connect()
        con.register("ent", ent.with_row_index("row").to_arrow())
        cols = ", ".join(f"CASE WHEN f.event_timestamp >= e.event_timestamp - INTERVAL {ttl_days} DAY "
                         f"THEN f.{c} END AS {VIEW}__{c}" for c in feats)
        got = pl.from_arrow(con.sql(f"""
            SELECT e.user_id, e.event_timestamp, {cols}
            FROM ent e ASOF LEFT JOIN read_parquet('{mart}') f
              ON e.user_id = f.user_id AND e.event_timestamp >= f.event_timestamp
            ORDER BY e.row""").to_arrow_table())
    elif method == "window":
        con = duckdb.connect()
        con.register("ent", ent.with_row_index("row").to_arrow())
        cols = ", ".join(f"m.{c} AS {VIEW}__{c}" for c in feats)
        got = pl.from_arrow(con.sql(f"""
            WITH m AS (
              SELECT e.row, f.*, ROW_NUMBER() OVER (PARTITION BY e.row
                       ORDER BY f.event_timestamp DESC, f.created_timestamp DESC) AS rn
              FROM ent e JOIN read_parquet('{mart}') f
                ON f.user_id = e.user_id AND f.event_timestamp <= e.event_timestamp
               AND f.event_timestamp + INTERVAL {ttl_days} DAY >= e.event_timestamp)
            SELECT e.user_id, e.event_timestamp, {cols}
            FROM ent e LEFT JOIN (SELECT * FROM m WHERE rn = 1) m ON m.row = e.row
            ORDER BY e.row""").to_arrow_table())
    elif method == "feast":
        from rgcd.featurestore import store as fs

        got = fs.frame(store, ent, service=None, features=[f"{VIEW}:{c}" for c in feats])
    elif method == "rgcd_asof":
        from rgcd.featurestore import store as fs

        got = fs.frame(store, ent, service=None, features=[f"{VIEW}:{c}" for c in feats], engine="asof")
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - t0
    # DuckDB names the zone Etc/UTC, Feast UTC: the same instants.
    got = got.with_columns(pl.col("event_timestamp").dt.convert_time_zone("UTC"))
    result = {"seconds": seconds, "peak_rss_mb": _peak_mb(), "rss_before_mb": base, "rows": got.height}
    if out is not None:
        got.write_parquet(out)
    return result


def profile_feast(ws_root: Path, entities: Path) -> dict:
    """Where a Feast frame's time goes: stages timed one by one, plus cProfile's top entries."""
    import cProfile
    import pstats

    import polars as pl

    from rgcd.config import Settings, Workspace
    from rgcd.featurestore import store as fs

    feats = _features(ws_root)
    store = fs.feature_store(Workspace(ws_root), Settings())
    store.list_feature_views()
    ent = pl.read_parquet(entities)
    refs = [f"{VIEW}:{c}" for c in feats]
    stages: dict[str, float] = {}
    t = time.perf_counter()
    pdf = ent.with_row_index("__rgcd_row").to_pandas()
    stages["entities polars -> pandas"] = time.perf_counter() - t
    t = time.perf_counter()
    job = store.get_historical_features(entity_df=pdf, features=refs, full_feature_names=True)
    stages["get_historical_features (plan: memtable, ibis expression)"] = time.perf_counter() - t
    t = time.perf_counter()
    table = job.to_arrow()
    stages["to_arrow (DuckDB executes the ibis SQL, fetch)"] = time.perf_counter() - t
    t = time.perf_counter()
    pl.from_arrow(table)
    stages["arrow -> polars"] = time.perf_counter() - t
    prof = cProfile.Profile()
    prof.enable()
    store.get_historical_features(entity_df=pdf, features=refs, full_feature_names=True).to_arrow()
    prof.disable()
    stats = pstats.Stats(prof)
    top = sorted(((v[3], f"{Path(k[0]).name}:{k[2]}") for k, v in stats.stats.items()), reverse=True)
    return {"stages_s": stages, "cprofile_top_cumulative_s": [[name, round(s, 3)] for s, name in top[:12]]}


def _child(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=50)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--ws", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--entities", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ttl-days", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one == "profile":
        print(json.dumps(profile_feast(args.ws, args.entities)))
        return
    if args.one:
        print(json.dumps(one(args.one, args.ws, args.entities, args.out, args.ttl_days)))
        return

    import polars as pl

    work = Path(tempfile.mkdtemp(prefix="rgcd-bench-frames-"))
    try:
        t = time.perf_counter()
        n_features, ttl_days = build_world(work / "ws", args.users, args.days, args.seed)
        print(f"world: {args.users} users x {args.days} daily snapshots, applied in "
              f"{time.perf_counter() - t:.1f}s", file=sys.stderr)
        sizes = []
        for rows in args.rows:
            entities = work / f"entities_{rows}.parquet"
            write_entities(entities, rows, args.users, args.days, args.seed)
            runs: dict[str, list[dict]] = {}
            for rep in range(args.repeats):
                for method in ("asof", "window", "feast", "rgcd_asof"):
                    out = work / f"{method}.parquet" if rep == 0 else None
                    extra = ["--out", str(out)] if out else []
                    got = _child(["--one", method, "--ws", str(work / "ws"), "--entities", str(entities),
                                  "--ttl-days", str(ttl_days), *extra])
                    runs.setdefault(method, []).append(got)
                    print(f"{rows:>9} {method:<7} {got['seconds']:.2f}s peak {got['peak_rss_mb']:.0f} MB",
                          file=sys.stderr)
            frames = {m: pl.read_parquet(work / f"{m}.parquet") for m in runs}
            same = all(frames["asof"].equals(frames[m]) for m in ("window", "feast", "rgcd_asof"))
            best = {m: min(r["seconds"] for r in rs) for m, rs in runs.items()}
            peak = {m: max(r["peak_rss_mb"] for r in rs) for m, rs in runs.items()}
            sizes.append({
                "entity_rows": rows, "same_frame": same,
                "non_null_share": round(1 - frames["asof"].select(f"{VIEW}__sv_plays_7d").null_count().item()
                                        / rows, 3),
                "seconds_best": best, "seconds_all": {m: [round(r["seconds"], 3) for r in rs]
                                                       for m, rs in runs.items()},
                "peak_rss_mb": peak,
                "rss_before_mb": {m: rs[0]["rss_before_mb"] for m, rs in runs.items()},
                "ratio_feast_over_asof": round(best["feast"] / best["asof"], 2),
                "ratio_window_over_asof": round(best["window"] / best["asof"], 2),
                "ratio_rgcd_asof_over_asof": round(best["rgcd_asof"] / best["asof"], 2),
                "ratio_feast_over_rgcd_asof": round(best["feast"] / best["rgcd_asof"], 2),
            })
        profile = _child(["--one", "profile", "--ws", str(work / "ws"),
                          "--entities", str(work / f"entities_{max(args.rows)}.parquet")])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "claim": "PIT training frame: Feast (DuckDB offline store) vs raw DuckDB ASOF JOIN, same parquet",
        "command": "python benchmarks/feast_frames.py " + " ".join(sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_avg_1m_at_end": os.getloadavg()[0]},
        "world": {"users": args.users, "days": args.days, "feature_rows": args.users * args.days,
                  "features": n_features, "ttl_days": ttl_days},
        "sizes": sizes, "feast_profile_at_largest": profile,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for s in sizes:
        print(f"{s['entity_rows']:>9} rows: asof {s['seconds_best']['asof']:.2f}s, window "
              f"{s['seconds_best']['window']:.2f}s, feast {s['seconds_best']['feast']:.2f}s, rgcd asof "
              f"{s['seconds_best']['rgcd_asof']:.2f}s "
              f"({s['ratio_feast_over_asof']}x); peak MB asof {s['peak_rss_mb']['asof']:.0f}, feast "
              f"{s['peak_rss_mb']['feast']:.0f}; same frame: {s['same_frame']}")
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
