"""Claim: a ranker reads one user + 200 candidate items of the `ranker` service in stated p50/p99 ms,
through the Feast SDK in-process and through `feast serve` over HTTP (the peer), side by side.

World: 1,000 users (user_features_daily, 32 features), 5,000 live items (item_content,
live_schedule, item_reasoning, item_embeddings with 64-d transferable and residual vectors),
applied and materialized into the SQLite online store. Each request is one random user and 200
random items (200 entity rows, 32 + 5 + 2 + 3 + 3 = 45 features). The SDK path is
`FeatureStore.get_online_features(...).to_dict()`; the HTTP path is POST /get-online-features
on a one-worker `rgcd features serve` over a kept-alive connection, response parsed as JSON.

    python benchmarks/feast_online.py [--requests 300]

Writes benchmarks/results/feast_online.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "feast_online.json"
T = datetime(2025, 5, 10, tzinfo=UTC)


def build_world(ws_root: Path, users: int, items: int, dim: int, seed: int):
    """Write the tables, apply and materialize; returns (workspace, store)."""
    sys.path.insert(0, str(ROOT / "tests" / "feature_repo"))
    from feast_marts import CONTRACT_MARTS, write_feature_data, write_mart

    from rgcd.config import Settings, Workspace
    from rgcd.featurestore import store as fs

    rng = np.random.default_rng(seed)
    ws = Workspace(ws_root).ensure()
    at = {"event_timestamp": [T] * users, "created_timestamp": [T] * users}
    rows: dict[str, list] = {"user_id": list(range(users)), **at}
    for name, dtype in CONTRACT_MARTS["user_features_daily"]["columns"]:
        if name in rows:
            continue
        rows[name] = {"bigint": lambda: rng.integers(0, 1000, users).tolist(),
                      "double": lambda: rng.random(users).tolist(),
                      "varchar": lambda: rng.choice(["food", "games", "music"], users).tolist(),
                      "boolean": lambda: (rng.random(users) < 0.3).tolist()}[dtype]()
    write_mart(ws.marts, "user_features_daily", rows)
    ids = [f"live:{i}" for i in range(items)]
    at = {"event_timestamp": [T - timedelta(hours=1)] * items, "created_timestamp": [T] * items}
    write_mart(ws.marts, "item_content", {
        "item_id": ids, "domain": ["live"] * items, "source_id": list(range(items)),
        "author_id": rng.integers(0, 500, items).tolist(), "title": [f"room {i}" for i in range(items)],
        "category_l1": rng.choice(["food", "games", "music"], items).tolist(), "duration_ms": [0] * items,
        "mm_embedding": rng.random((items, dim), dtype=np.float32).tolist(), **at})
    write_mart(ws.marts, "live_schedule", {"item_id": ids, "live_id": list(range(items)),
                                           "start_timestamp": [T - timedelta(hours=1)] * items, **at})
    write_mart(ws.marts, "behaviour_pairs", {"pair_id": ["p"], "event_timestamp": [T],
                                             "created_timestamp": [T]})
    write_feature_data(ws.feature_data, "item_reasoning", {
        "item_id": ids, "vertical_domain": ["entertainment"] * items, "key_subject": ["a subject"] * items,
        "content_theme": ["a theme"] * items, **at})
    write_feature_data(ws.feature_data, "item_embeddings", {
        "item_id": ids, "domain": ["live"] * items,
        "transferable": rng.standard_normal((items, dim), dtype=np.float32).tolist(),
        "residual": rng.standard_normal((items, dim), dtype=np.float32).tolist(),
        "model_version": ["bench-1"] * items, **at})
    settings = Settings()
    fs.apply(ws, settings)
    store = fs.feature_store(ws, settings)
    fs.materialize(store)
    return ws, store


def _requests(n: int, users: int, items: int, per: int, seed: int) -> list[dict[str, list]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        user = int(rng.integers(0, users))
        cand = rng.choice(items, per, replace=False)
        out.append({"user_id": [user] * per, "item_id": [f"live:{i}" for i in cand]})
    return out


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": len(ms)}


def bench_sdk(store, requests: list[dict[str, list]], warmup: int) -> tuple[dict, dict]:
    fs_ranker = store.get_feature_service("ranker")
    times, last = [], {}
    for i, req in enumerate(requests):
        rows = [{"user_id": u, "item_id": it} for u, it in zip(req["user_id"], req["item_id"], strict=True)]
        t = time.perf_counter()
        response = store.get_online_features(features=fs_ranker, entity_rows=rows, full_feature_names=True)
        last = response.to_dict()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    return _percentiles(times), last


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_http(ws_root: Path, requests: list[dict[str, list]], warmup: int) -> tuple[dict, dict, float]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rgcd.cli", "-w", str(ws_root), "features", "serve",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("feature server exited")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/health")
                health = conn.getresponse()
                health.read()  # the connection is reused: drain the response
                if health.status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        ready_s = time.perf_counter() - t0
        times, last = [], {}
        for i, req in enumerate(requests):
            body = json.dumps({"feature_service": "ranker", "entities": req, "full_feature_names": True})
            t = time.perf_counter()
            conn.request("POST", "/get-online-features", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            last = json.loads(resp.read())
            if i >= warmup:
                times.append((time.perf_counter() - t) * 1000)
            assert resp.status == 200, last
        return _percentiles(times), last, ready_s
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rgcd-bench-online-"))
    try:
        ws, store = build_world(work / "ws", args.users, args.items, args.dim, args.seed)
        reqs = _requests(args.requests + args.warmup, args.users, args.items, args.candidates, args.seed)
        sdk, sdk_last = bench_sdk(store, reqs, args.warmup)
        print(f"sdk  p50 {sdk['p50_ms']} ms p99 {sdk['p99_ms']} ms", file=sys.stderr)
        http, http_last, ready_s = bench_http(ws.root, reqs, args.warmup)
        print(f"http p50 {http['p50_ms']} ms p99 {http['p99_ms']} ms (server ready in {ready_s:.1f}s)",
              file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # Both paths answered the last request with the same vectors.
    names = http_last["metadata"]["feature_names"]
    http_vals = dict(zip(names, (r["values"] for r in http_last["results"]), strict=True))
    same = all(np.allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))
               for a, b in zip(http_vals["item_embeddings__transferable"],
                               sdk_last["item_embeddings__transferable"], strict=True))
    result = {
        "claim": "online read of the ranker service, 1 user + 200 items: Feast SDK vs feast serve HTTP",
        "command": "python benchmarks/feast_online.py " + " ".join(sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_avg_1m_at_end": os.getloadavg()[0]},
        "world": {"users": args.users, "items": args.items, "dim": args.dim, "candidates": args.candidates,
                  "features_per_row": len(sdk_last) - 2, "online_store": "sqlite"},
        "sdk": sdk, "http": http, "http_server_ready_s": round(ready_s, 1), "same_vectors": bool(same),
        "ratio_http_over_sdk_p50": round(http["p50_ms"] / sdk["p50_ms"], 2),
        "ratio_http_over_sdk_p99": round(http["p99_ms"] / sdk["p99_ms"], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"1 user + {args.candidates} items: sdk p50 {sdk['p50_ms']} / p99 {sdk['p99_ms']} ms, http p50 "
          f"{http['p50_ms']} / p99 {http['p99_ms']} ms ({result['ratio_http_over_sdk_p50']}x at p50) "
          f"-> {RESULTS}")


if __name__ == "__main__":
    main()
