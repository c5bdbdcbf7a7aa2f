"""Claim: with a Milvus server URI, `rgcd publish` switches versions while `rgcd serve` keeps answering:
no failed request under load, and the p99 during the publish stays near the p99 around it.

The packaged Milvus 2.3 server (`rgcd milvus start`'s code: own network namespace, 127.0.0.1 only,
stopped by pid) holds the tests' tiny serving world (tests/embeddings/serving_world.py: 40 rooms, 16
users with vectors, 60 short videos); `rgcd serve --workers W` answers `--clients` keep-alive clients
on 127.0.0.1 (U2I and I2I, k = 10, at most 5,000 requests each); after `--before` seconds model version
v2 is written and published in this process, then the clients run `--after` more seconds. Reports
requests, failed ones (any answer but 200: the goal is 0), the versions answered, and p50/p99 before,
during and after the publish. The peer is the same load with no publish (the seconds before it).

    PYTHONPATH=. python benchmarks/publish_under_load.py [--clients 8] [--workers 2] [--before 5] [--after 5]

Writes benchmarks/results/publish_under_load.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "embeddings"))
import serving_world as w  # noqa: E402 (the tests' tiny world and load generator)
from results_format import write_result  # noqa: E402
from servers import free_port, stop  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "publish_under_load.json"


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.array(xs) * 1000, q)), 1) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--before", type=float, default=5)
    ap.add_argument("--after", type=float, default=5)
    args = ap.parse_args()
    from pymilvus import MilvusClient

    from rgcd.config import RetrievalConfig, Settings
    from rgcd.embeddings import milvus_server as ms
    from rgcd.embeddings.publish import publish

    root = Path(tempfile.mkdtemp(prefix="publish-load-"))
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    state = ms.start(root / "server", free_port())
    server_start_s = time.perf_counter() - t0
    try:
        admin = MilvusClient(uri=state.uri)
        admin.create_database("bench")
        admin.close()
        settings = Settings(retrieval=RetrievalConfig(default_k=10, milvus_uri=state.uri, milvus_db="bench"))
        ws = w.build(root / "ws", settings)
        publish(ws, settings)
        w.write_config(ws, settings, default_k=10)
        port = free_port()
        proc = w.start_service(ws, port, "--workers", str(args.workers))
        paths = ([f"/retrieve/user/{u}?at=2025-05-10T00:00:00Z" for u in w.USERS_WITH_VECTORS]
                 + [f"/retrieve/item/photo:{p}?at=2025-05-10T00:00:00Z" for p in range(1, 61, 3)])
        try:
            with w.Load(port, paths, clients=args.clients) as load:
                time.sleep(args.before)
                w.write_vectors(ws, "v2", seed=1, created=datetime.now(UTC) + timedelta(seconds=1))
                t_publish = time.monotonic()
                report = publish(ws, settings)
                t_done = time.monotonic()
                time.sleep(args.after)
            rss = ms.rss_bytes(state.pid) / 2**20
        finally:
            stop(proc)
    finally:
        ms.stop(root / "server")
        shutil.rmtree(root, ignore_errors=True)
    records = load.records
    failed = [r for r in records if r[2] != 200]
    before = [r[1] for r in records if r[0] < t_publish]
    during = [r[1] for r in records if t_publish <= r[0] <= t_done]
    after = [r[1] for r in records if r[0] > t_done]
    versions = sorted({r[3] for r in records if r[2] == 200})
    figures = {
        "requests": len(records), "failed": len(failed), "failed_examples": [r[3][:200] for r in failed[:3]],
        "versions_answered": versions, "published": report.one_line(),
        "publish_s": round(t_done - t_publish, 2), "server_start_s": round(server_start_s, 1),
        "server_rss_mib": round(rss),
        "p50_ms": {"before": _pct(before, 50), "during": _pct(during, 50), "after": _pct(after, 50)},
        "p99_ms": {"before": _pct(before, 99), "during": _pct(during, 99), "after": _pct(after, 99)},
        "requests_during_publish": len(during), "clients": args.clients, "workers": args.workers,
    }
    ratio = (f"{figures['p99_ms']['during'] / figures['p99_ms']['before']:.2f}x p99 during / before"
             if figures["p99_ms"]["during"] and figures["p99_ms"]["before"] else None)
    write_result(RESULTS, claim="a publish under load through a Milvus server fails no request",
                 headline=(f"{figures['requests']:,} requests from {args.clients} clients during a "
                           f"{figures['publish_s']} s publish on the packaged Milvus server: "
                           f"{figures['failed']} failed, p99 {figures['p99_ms']['during']} ms during"),
                 figures=figures, peer=("the same load in the seconds before the publish: p99 "
                                        f"{figures['p99_ms']['before']} ms"), ratio=ratio,
                 machine=(f"{platform.machine()}, {os.cpu_count()} cores, shared (load average "
                          f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end)"))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
