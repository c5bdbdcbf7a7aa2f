"""Claim: `rgcd serve` answers U2I and I2I at stated p50/p99, errors and throughput with 1, 8 and 32
clients, on the embedded Milvus Lite file and on the packaged Milvus server with 1 and 2 workers, and
this is where the time of one request goes (Feast online read, Milvus search, answer and JSON, HTTP).

A published workspace (`--workspace`, e.g. a copy of the demo's; default: the tests' tiny serving
world, built in a temporary folder) is served by `rgcd serve` on 127.0.0.1 as its own process, once
per configuration: Lite with 1 worker (a Lite file allows one process: 2 workers are refused, and
that row says so), then the server with `--workers` 1 and 2. The server is the workspace's packaged
Milvus (`rgcd milvus start`'s code, under <workspace>/milvus-server, network namespace of its own,
stopped by pid when this script started it), or `--server-uri`; a server with nothing published
under the alias gets the workspace's published version first (`rgcd publish` with the server's URI).
Every service is stopped by its pid.

Each cell (route x clients) runs keep-alive clients (threads of this process) until `--seconds`
pass or `--requests` have been sent, after a warm-up; requests cycle over up to 200 users with a
vector of the published version (U2I) and 200 short videos (I2I), at request time "now" (the rooms
on air). One extra cell per route asks at a past time (`--past-at`, default an hour before the last
known end at publication) with one client. Then, with the services stopped, the same requests run in
this process through `Retriever`, timed part by part.

    PYTHONPATH=. python benchmarks/serve_load.py [--workspace WS] [--backends lite,server]
        [--clients 1,8,32] [--seconds 10] [--requests 3000] [--k 50]

Writes benchmarks/results/serve_load.json. The machine is shared: every cell records the load
average; figures are upper bounds.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "embeddings"))
import serving_world as w  # noqa: E402 (the tests' tiny world and load generator)
from results_format import write_result  # noqa: E402
from servers import cpu_s, free_port, stop, wait_until_healthy  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "serve_load.json"
GOALS = {"u2i_8_clients_p99_ms": 50, "u2i_8_clients_req_s": 200, "i2i_p99_ms": 50, "past_over_now": 2.0}
SERVER_DB = "serve_load"


def _pct(ms: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(ms), q)), 2) if ms else None


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def config_file(path: Path, settings, **retrieval) -> Path:
    """A YAML configuration: `settings` with these retrieval fields changed (passed as `rgcd -c`)."""
    import yaml

    doc = settings.model_dump(mode="json")
    doc["retrieval"].update(retrieval)
    path.write_text(yaml.safe_dump(doc))
    return path


def start_service(ws_root: Path, config: Path, port: int, workers: int) -> subprocess.Popen:
    """`rgcd serve` as its own process on 127.0.0.1:port, once /health answers 200."""
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (the server writes it while it runs)
    proc = subprocess.Popen([sys.executable, "-m", "rgcd.cli", "-w", str(ws_root), "-c", str(config), "serve",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})

    def output() -> str:
        log.seek(0)
        return log.read()[-3000:]

    wait_until_healthy(proc, f"http://127.0.0.1:{port}", 300, output)
    return proc


def run_cell(port: int, paths: list[str], clients: int, seconds: float, requests: int,
             service_pid: int, milvus_pid: int | None, rate: float | None = None) -> dict:
    """`clients` keep-alive clients until `seconds` pass or `requests` were sent: p50/p99/errors/rate,
    and the CPU milliseconds per request of the service (all its workers) and of the Milvus server.
    `rate`: the clients send that many requests a second together, on a schedule (else each sends
    as soon as its last answer arrived)."""
    cpu0 = cpu_s([service_pid]), cpu_s([milvus_pid]) if milvus_pid else 0.0
    client0 = time.process_time()  # this process: the load's client threads
    with w.Load(port, paths, clients=clients, max_requests=max(1, requests // clients), rate=rate) as load:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds and any(t.is_alive() for t in load.threads):
            time.sleep(0.05)
    wall = time.monotonic() - t0
    cpu1 = cpu_s([service_pid]), cpu_s([milvus_pid]) if milvus_pid else 0.0
    client_s = time.process_time() - client0
    n = max(1, len(load.records))
    ok = [r[1] * 1000 for r in load.records if r[2] == 200]
    errors = [r for r in load.records if r[2] != 200]
    return {"clients": clients, "requests": len(load.records), "errors": len(errors),
            "error_examples": sorted({f"{r[2]} {r[3][:160]}" for r in errors})[:3],
            "p50_ms": _pct(ok, 50), "p99_ms": _pct(ok, 99), "max_ms": _pct(ok, 100),
            "req_per_s": round(len(load.records) / wall, 1), "seconds": round(wall, 1),
            "service_cpu_ms_per_request": round((cpu1[0] - cpu0[0]) * 1000 / n, 2),
            "milvus_server_cpu_ms_per_request": (round((cpu1[1] - cpu0[1]) * 1000 / n, 2) if milvus_pid
                                                 else None),
            "client_cpu_ms_per_request": round(client_s * 1000 / n, 2),
            "offered_req_per_s": rate, "load_avg": _load()}


def warm(port: int, paths: list[str], n: int = 30) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for path in (paths * n)[:n]:
        conn.request("GET", path)
        conn.getresponse().read()
    conn.close()


def request_paths(ws, version: str, past_at: str, k: int, seed: int = 0) -> dict[str, list[str]]:
    """Up to 200 users with a vector of `version` and 200 short videos; now and at `past_at`."""
    import polars as pl

    rng = np.random.default_rng(seed)
    users = (pl.read_parquet(ws.feature_data / "user_embeddings.parquet",
                             columns=["user_id", "model_version"])
             .filter(pl.col("model_version") == version)["user_id"].unique().sort().to_list())
    photos = (pl.read_parquet(ws.feature_data / "item_embeddings.parquet",
                              columns=["item_id", "domain", "model_version"])
              .filter((pl.col("model_version") == version) & (pl.col("domain") == "photo"))["item_id"]
              .unique().sort().to_list())
    users = [int(u) for u in rng.permutation(users)[:200]]
    photos = [str(p) for p in rng.permutation(photos)[:200]]
    return {"u2i": [f"/retrieve/user/{u}?k={k}" for u in users],
            "i2i": [f"/retrieve/item/{p}?k={k}" for p in photos],
            "u2i_past": [f"/retrieve/user/{u}?k={k}&at={past_at}" for u in users],
            "i2i_past": [f"/retrieve/item/{p}?k={k}&at={past_at}" for p in photos]}


def breakdown(ws, settings, paths: dict[str, list[str]], n: int) -> dict:
    """Time one request part by part in this process (no HTTP): Feast online read, Milvus search,
    the rest of retrieval (reasons), as_json + json.dumps; p50/p99 ms of each over `n` requests per
    route, wall clock and this process's CPU (Milvus Lite searches in a thread of this process, so its
    CPU counts; a server's does not), the CPU being what a loaded machine does not inflate."""
    from urllib.parse import parse_qs, urlsplit

    from rgcd.embeddings.retrieval import Retriever, parse_at
    from rgcd.featurestore.online import freeze_startup_heap

    retriever = Retriever(ws, settings)
    freeze_startup_heap()  # as the service does once it has loaded what it serves
    parts: dict[str, list[float]] = {}
    online, search = retriever.online, retriever.rooms.search_many

    def timed(name, fn):
        def wrapper(*a, **kw):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                parts[name][0] += (time.perf_counter() - t) * 1000
                parts[name][1] += (time.process_time() - c) * 1000
        return wrapper

    retriever.online = timed("feast_online_read", online)
    retriever.rooms.search_many = timed("milvus_search", search)
    out = {}
    names = ("feast_online_read", "milvus_search", "reasons_and_rest", "json", "total")
    try:
        for route, route_paths in paths.items():
            rows: dict[str, list[float]] = {k: [] for k in names}
            cpu: dict[str, list[float]] = {k: [] for k in names}
            for i in range(n + 10):
                url = urlsplit(route_paths[i % len(route_paths)])
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                ident = url.path.rsplit("/", 1)[1]
                for name in ("feast_online_read", "milvus_search"):
                    parts[name] = [0.0, 0.0]
                t0, c0 = time.perf_counter(), time.process_time()
                fn = retriever.for_user if route.startswith("u2i") else retriever.for_item
                answer = fn(int(ident) if route.startswith("u2i") else ident, parse_at(query.get("at")),
                            int(query["k"]))
                t1, c1 = time.perf_counter(), time.process_time()
                json.dumps(answer.as_json(), separators=(",", ":"))
                t2, c2 = time.perf_counter(), time.process_time()
                if i < 10:
                    continue  # warm-up
                (feast, feast_cpu), (milvus, milvus_cpu) = parts["feast_online_read"], parts["milvus_search"]
                for got, values in ((rows, (feast, milvus, (t1 - t0) * 1000 - feast - milvus,
                                            (t2 - t1) * 1000, (t2 - t0) * 1000)),
                                    (cpu, (feast_cpu, milvus_cpu, (c1 - c0) * 1000 - feast_cpu - milvus_cpu,
                                           (c2 - c1) * 1000, (c2 - c0) * 1000))):
                    for name, value in zip(names, values, strict=True):
                        got[name].append(value)
            out[route] = {k: {"p50_ms": _pct(v, 50), "p99_ms": _pct(v, 99),
                              "cpu_p50_ms": _pct(cpu[k], 50), "cpu_p99_ms": _pct(cpu[k], 99)}
                          for k, v in rows.items()}
            out[route]["load_avg"] = _load()
    finally:
        retriever.close()
    return out


def ensure_server(ws, settings, args) -> tuple[object, str, bool, dict]:
    """(server settings, uri, started here, facts): the Milvus server with the workspace's version
    published under the alias (published here when it is not)."""
    from pymilvus import MilvusClient

    from rgcd.embeddings import milvus_server as ms
    from rgcd.embeddings.milvus_store import RoomVectors, VectorStoreError
    from rgcd.embeddings.publish import publish

    facts: dict = {}
    started = False
    uri = args.server_uri
    db = args.server_db
    if not uri:
        running = ms.read_state(ws.root)
        if running is None:
            t0 = time.perf_counter()
            running = ms.start(ws.root, free_port())
            facts["server_start_s"] = round(time.perf_counter() - t0, 1)
            started = True
        uri = running.uri
        facts["server_pid"] = running.pid  # the launcher: its relay and the server are its descendants
    admin = MilvusClient(uri=uri)
    if db and db not in admin.list_databases():
        admin.create_database(db)
    admin.close()
    server_settings = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(
        update={"milvus_uri": uri, "milvus_db": db})})
    rooms = RoomVectors.connect(ws, server_settings)
    try:
        have = rooms.current().model_version
    except VectorStoreError:
        have = None
    finally:
        rooms.close()
    if have != args.version:
        t0 = time.perf_counter()
        report = publish(ws, server_settings, version=args.version)
        facts["publish_s"] = round(time.perf_counter() - t0, 1)
        facts["published"] = report.one_line()
    return server_settings, uri, started, facts


def run_backend(name: str, ws, settings, config: Path, workers_list: list[int], paths, args,
                milvus_pid: int | None = None) -> dict:
    out: dict = {}
    for workers in workers_list:
        label = f"{name}_workers_{workers}"
        if name == "lite" and workers > 1:
            out[label] = {"refused": "a Milvus Lite file allows one process: `rgcd serve --workers 2` "
                                     "exits 2 (embeddings/service.py workers_for)"}
            continue
        port = free_port()
        t0 = time.perf_counter()
        proc = start_service(ws.root, config, port, workers)
        ready_s = round(time.perf_counter() - t0, 1)
        cells: dict = {"ready_s": ready_s}
        try:
            for route in ("u2i", "i2i"):
                warm(port, paths[route])
                for clients in args.clients:
                    cell = run_cell(port, paths[route], clients, args.seconds, args.requests, proc.pid,
                                    milvus_pid)
                    cells[f"{route}_{clients}"] = cell
                    print(f"{label} {route} {clients:>2} clients: p50 {cell['p50_ms']} p99 "
                          f"{cell['p99_ms']} ms, {cell['req_per_s']} req/s, {cell['errors']} errors, "
                          f"CPU/request {cell['service_cpu_ms_per_request']} ms service + "
                          f"{cell['milvus_server_cpu_ms_per_request']} ms Milvus + "
                          f"{cell['client_cpu_ms_per_request']} ms clients (load {cell['load_avg']})",
                          file=sys.stderr, flush=True)
                for rate in args.paced:  # 8 clients at a set rate: the latency at that throughput
                    cells[f"{route}_8_at_{rate:g}"] = cell = run_cell(
                        port, paths[route], 8, args.seconds, args.requests, proc.pid, milvus_pid, rate)
                    print(f"{label} {route}  8 clients at {rate:g} req/s: p50 {cell['p50_ms']} p99 "
                          f"{cell['p99_ms']} ms, {cell['req_per_s']} req/s, {cell['errors']} errors "
                          f"(load {cell['load_avg']})", file=sys.stderr, flush=True)
                past = f"{route}_past"
                warm(port, paths[past], 10)
                cells[f"{past}_1"] = cell = run_cell(port, paths[past], 1, args.seconds, args.requests,
                                                        proc.pid, milvus_pid)
                print(f"{label} {past}  1 client : p50 {cell['p50_ms']} p99 {cell['p99_ms']} ms "
                      f"(load {cell['load_avg']})", file=sys.stderr, flush=True)
        finally:
            stop(proc)
        out[label] = cells
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path, default=None, help="a published workspace (default: the tests' "
                    "tiny serving world, built in a temporary folder)")
    ap.add_argument("--backends", default="lite,server")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=10, help="at most this long per cell")
    ap.add_argument("--requests", type=int, default=3000, help="at most this many requests per cell")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--past-at", default=None, help="the past request time (default: an hour before the "
                    "last end known at publication)")
    ap.add_argument("--breakdown", type=int, default=200, help="in-process requests per route timed by part")
    ap.add_argument("--server-uri", default="", help="a running Milvus server (default: the workspace's "
                    "packaged server, started here if it does not run)")
    ap.add_argument("--server-db", default=SERVER_DB)
    ap.add_argument("--paced", default="200", help="total request rates (comma-separated) at which 8 "
                    "clients also send on a schedule: the p99 at that throughput, below the service's "
                    "limit (empty: none)")
    ap.add_argument("--search-batch", default="16,0", help="retrieval.search_batch values the server is "
                    "served with, the first as the main rows (0: each request searches on its own, as "
                    "before batching; the peer)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.search_batch = [int(b) for b in args.search_batch.split(",")]
    args.paced = [float(r) for r in args.paced.split(",") if r]
    args.clients = [int(c) for c in args.clients.split(",")]
    workers_list = [int(x) for x in args.workers.split(",")]
    backends = args.backends.split(",")
    from rgcd.config import RetrievalConfig, Settings, Workspace
    from rgcd.embeddings import milvus_server as ms
    from rgcd.embeddings.milvus_store import RoomVectors
    from rgcd.embeddings.publish import publish

    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    load_start = _load()
    started_server = False
    ws = None
    try:
        if args.workspace is None:
            settings = Settings(retrieval=RetrievalConfig(default_k=args.k))
            ws = w.build(tmp / "ws", settings)
            publish(ws, settings)
            world = "the tests' tiny serving world (tests/embeddings/serving_world.py)"
        else:
            ws = Workspace(args.workspace.resolve())
            settings = ws.settings()
            world = f"workspace {args.workspace}"
        lite_settings = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(
            update={"milvus_uri": "", "milvus_db": ""})})
        rooms = RoomVectors.connect(ws, lite_settings)
        try:
            published = rooms.current()
            on_air = rooms.count(published.collection, "on_air")
            total = rooms.count(published.collection)
        finally:
            rooms.close()
        args.version = published.model_version
        past_at = args.past_at or (datetime.fromtimestamp(published.ended_until / 1000, tz=UTC)
                                   - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        paths = request_paths(ws, published.model_version, past_at, args.k)
        figures: dict = {"world": {"source": world, "model_version": published.model_version,
                                   "rooms": total, "rooms_on_air_partition": on_air,
                                   "users_asked": len(paths["u2i"]), "videos_asked": len(paths["i2i"]),
                                   "k": args.k, "past_at": past_at},
                         "bounds": {"seconds_per_cell": args.seconds, "requests_per_cell": args.requests},
                         "goals": GOALS, "runs": {}, "breakdown": {}}
        if "lite" in backends:
            config = config_file(tmp / "lite.yaml", lite_settings)
            figures["runs"] |= run_backend("lite", ws, lite_settings, config, workers_list, paths, args)
            figures["breakdown"]["lite"] = breakdown(ws, lite_settings, paths, args.breakdown)
        if "server" in backends:
            server_settings, uri, started_server, facts = ensure_server(ws, settings, args)
            figures["server"] = facts
            for batch in args.search_batch:
                # the first value names the plain rows (server_workers_N); others add _batch_<value>
                name = "server" if batch == args.search_batch[0] else f"server_batch_{batch}"
                config = config_file(tmp / f"server_{batch}.yaml", server_settings, search_batch=batch)
                figures["runs"] |= run_backend(name, ws, server_settings, config, workers_list, paths, args,
                                               facts.get("server_pid"))
            figures["breakdown"]["server"] = breakdown(ws, server_settings, paths, args.breakdown)
            if started_server:
                figures["server"]["rss_mib"] = round(ms.rss_bytes(ms.read_state(ws.root).pid) / 2**20)
    finally:
        if started_server and ws is not None:
            ms.stop(ws.root)
        shutil.rmtree(tmp, ignore_errors=True)
    figures["load_avg"] = {"start": load_start, "end": _load()}
    runs = figures["runs"]
    best = next((runs[k] for k in ("server_workers_2", "server_workers_1", "lite_workers_1") if k in runs
                 and "refused" not in runs[k]), None)
    lite = runs.get("lite_workers_1")
    label = next(k for k in ("server_workers_2", "server_workers_1", "lite_workers_1") if runs.get(k) is best)
    u8 = best.get("u2i_8", {})
    peers = {k: v["u2i_8"] for k, v in runs.items()
             if k.startswith("server_batch_") and k.endswith(label[-10:]) and "u2i_8" in v}
    if peers and u8:  # the same server and workers, each request searching on its own: (main, peer)
        compared = ("p50_ms", "p99_ms", "req_per_s", "service_cpu_ms_per_request",
                    "milvus_server_cpu_ms_per_request")
        figures["batching"] = {k: {f: (u8[f], v[f]) for f in compared} for k, v in peers.items()}
    write_result(
        args.out,
        claim="rgcd serve under 1, 8 and 32 keep-alive clients, U2I and I2I, Milvus Lite and server",
        headline=(f"U2I, 8 clients, {label.replace('_', ' ')}: p50 {u8.get('p50_ms')} / p99 "
                  f"{u8.get('p99_ms')} ms, {u8.get('req_per_s')} req/s, {u8.get('errors')} errors ({world})"),
        figures=figures,
        peer=(f"Milvus Lite, 1 worker: p50 {lite['u2i_8']['p50_ms']} / p99 {lite['u2i_8']['p99_ms']} ms, "
              f"{lite['u2i_8']['req_per_s']} req/s"
              if lite and "u2i_8" in lite and best is not lite else None),
        ratio=(f"{u8['req_per_s'] / lite['u2i_8']['req_per_s']:.2f}x the throughput"
               if lite and "u2i_8" in lite and best is not lite and u8 else None),
        machine=(f"{platform.machine()}, {os.cpu_count()} cores, shared with other developers (load average "
                 f"{load_start} at start, {figures['load_avg']['end']} at end): upper bounds"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from rgcd.terminal import clean_terminal

    with clean_terminal():
        main()
