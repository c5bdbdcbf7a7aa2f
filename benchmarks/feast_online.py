"""Claim: a ranker reads one user + 200 candidate items of the `ranker` service in stated p50/p99 ms,
through the Feast SDK in-process and through the HTTP feature server, on SQLite and on Redis, with
the project's online tuning ("after") and without it ("before"), side by side in one run; and the
HTTP server holds 8 concurrent clients for 30 s at a stated rate, p99 and error count.

- before: the registry cache expires every 5 s inside a request (Feast's sync mode), one server
  worker, the server re-reading the registry every 5 s (the project's configuration until now);
- after: rgcd/featurestore/online.py: the cache never expires inside a request, a refresh re-reads
  only a changed registry file and rebuilds the request plans first; one worker per CPU core.

World: 1,000 users (user_features_daily, 32 features), 5,000 live items (item_content,
live_schedule, item_reasoning, item_embeddings with 64-d transferable and residual vectors),
applied and materialized. Each request is one random user and 200 random items (200 entity rows,
45 features). SDK: `FeatureStore.get_online_features(...).to_dict()`; HTTP: POST
/get-online-features over a kept-alive connection, parsed as JSON. With the tuning, also in two
reads (the services ranker_user, 1 row, and ranker_items, 200 rows: the user's features once, not
200 times): SDK two `get_online_features(...).to_dict()`, HTTP two POSTs. Every figure comes with
CPU ms a request (SDK: this process; HTTP: the feature server's processes), which a shared
machine's load does not inflate as it does wall-clock times. Redis is a real redis-server
on 127.0.0.1 (Debian's package), started and stopped by this script.

    python benchmarks/feast_online.py [--requests 200] [--load-seconds 30]

Writes benchmarks/results/feast_online.json.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from results_format import write_result  # noqa: E402
from servers import cpu_s, free_port  # noqa: E402 (the tests' helpers)

RESULTS = ROOT / "benchmarks" / "results" / "feast_online.json"
T = datetime(2025, 5, 10, tzinfo=UTC)


def build_world(ws_root: Path, users: int, items: int, dim: int, seed: int, features: dict):
    """Write the tables, apply and materialize; returns (workspace, settings)."""
    import yaml

    sys.path.insert(0, str(ROOT / "tests" / "feature_repo"))
    from feast_marts import CONTRACT_MARTS, write_feature_data, write_mart

    from rgcd.config import Workspace
    from rgcd.featurestore import store as fs

    rng = np.random.default_rng(seed)
    ws = Workspace(ws_root).ensure()
    (ws.root / "rgcd.yaml").write_text(yaml.safe_dump({"features": features}))
    settings = ws.settings()
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
    fs.apply(ws, settings)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        fs.materialize(fs.feature_store(ws, settings))
    return ws, settings


def _before_config(ws, settings) -> dict:
    """The Feast configuration as the project ran it before the tuning: cache TTL 5 s, sync mode."""
    from rgcd.featurestore import store as fs

    conf = fs._config_dict(ws, settings)
    conf["registry"] = {"path": conf["registry"]["path"], "cache_ttl_seconds": 5}
    return conf


def sdk_store(ws, settings, tuned: bool):
    """The SDK's FeatureStore, after (fs.feature_store, ready to serve: plans built, start-up heap frozen)
    or before (plain Feast, old registry cache, nothing frozen)."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from rgcd.featurestore import store as fs
    from rgcd.featurestore.online import import_feast_milvus_store_quietly

    if tuned:
        store = fs.feature_store(ws, settings)
        store.ready_to_serve()  # what a ranker's process does once after opening (docs/serving.md)
        return store
    gc.unfreeze()  # "before" had no frozen heap, whatever an earlier store of this run froze
    import_feast_milvus_store_quietly()  # what the tuned store does too: no pydantic warning printed
    config = RepoConfig(**_before_config(ws, settings))
    config.repo_path = fs.REPO_DIR
    return FeatureStore(config=config)


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
    times, cpu, last = [], [], {}
    for i, req in enumerate(requests):
        rows = [{"user_id": u, "item_id": it} for u, it in zip(req["user_id"], req["item_id"], strict=True)]
        t, c = time.perf_counter(), time.process_time()
        response = store.get_online_features(features=fs_ranker, entity_rows=rows, full_feature_names=True)
        last = response.to_dict()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
    # CPU ms of this process per read: what a read costs whatever else the shared machine runs
    return {**_percentiles(times), "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 2),
            "cpu_p99_ms": round(float(np.percentile(cpu, 99)), 2)}, last


def _start_server(ws, settings, tuned: bool, work: Path) -> tuple[subprocess.Popen, int, float]:
    """Start the feature server (after: `rgcd features serve`; before: `feast serve` as run before)."""
    import yaml

    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    if tuned:
        cmd = [sys.executable, "-m", "rgcd.cli", "-w", str(ws.root), "features", "serve", "--port", str(port)]
    else:
        before = work / "before_repo"
        before.mkdir(exist_ok=True)
        (before / "feature_store.yaml").write_text(yaml.safe_dump(_before_config(ws, settings)))
        cmd = [str(Path(sys.executable).parent / "feast"), "-c", str(before), "serve", "-h", "127.0.0.1",
               "-p", str(port), "-w", "1", "-r", "5", "--no-access-log"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"feature server exited: {cmd}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/health")
            health = conn.getresponse()
            health.read()
            conn.close()
            if health.status == 200:
                return proc, port, time.perf_counter() - t0
        except OSError:
            time.sleep(0.3)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _post(conn: http.client.HTTPConnection, req: dict[str, list],
          service: str = "ranker") -> tuple[int, dict]:
    body = json.dumps({"feature_service": service, "entities": req, "full_feature_names": True})
    conn.request("POST", "/get-online-features", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def _post_split(conn: http.client.HTTPConnection, req: dict[str, list]) -> tuple[int, dict]:
    """The ranker's features in two requests: ranker_user for the user, ranker_items for the items."""
    status, _ = _post(conn, {"user_id": req["user_id"][:1]}, "ranker_user")
    if status != 200:
        return status, {}
    return _post(conn, {"item_id": req["item_id"]}, "ranker_items")


def _post_protobuf(conn: http.client.HTTPConnection, req: dict[str, list],
                   service: str) -> tuple[int, object]:
    """POST Feast's body to `rgcd features serve`'s protobuf read; the answer parsed into Feast's
    GetOnlineFeaturesResponse message (what a client gets before reading any value out of it)."""
    from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse

    from rgcd.featurestore.store import PROTOBUF_READ_ROUTE

    body = json.dumps({"feature_service": service, "entities": req, "full_feature_names": True})
    conn.request("POST", PROTOBUF_READ_ROUTE, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, (GetOnlineFeaturesResponse.FromString(data) if resp.status == 200 else data)


def _post_split_protobuf(conn: http.client.HTTPConnection, req: dict[str, list]) -> tuple[int, object]:
    """The two reads of _post_split, answered as protobuf."""
    status, _ = _post_protobuf(conn, {"user_id": req["user_id"][:1]}, "ranker_user")
    if status != 200:
        return status, {}
    return _post_protobuf(conn, {"item_id": req["item_id"]}, "ranker_items")


def bench_sdk_split(store, requests: list[dict[str, list]], warmup: int) -> dict:
    """ranker_user (1 row) + ranker_items (the items), each `.to_dict()` as bench_sdk reads `ranker`."""
    user_service = store.get_feature_service("ranker_user")
    items_service = store.get_feature_service("ranker_items")
    times, cpu = [], []
    for i, req in enumerate(requests):
        t, c = time.perf_counter(), time.process_time()
        store.get_online_features(features=user_service, entity_rows=[{"user_id": req["user_id"][0]}],
                                  full_feature_names=True).to_dict()
        items = [{"item_id": x} for x in req["item_id"]]
        store.get_online_features(features=items_service, entity_rows=items,
                                  full_feature_names=True).to_dict()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
    return {**_percentiles(times), "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 2),
            "cpu_p99_ms": round(float(np.percentile(cpu, 99)), 2)}


def bench_http(port: int, requests: list[dict[str, list]], warmup: int, server_pid: int,
               post=_post) -> tuple[dict, dict]:
    """One client, one request at a time; a failed request (a connection the server closed: gunicorn
    restarts a worker starved past its 30 s heartbeat on a loaded machine) is counted, not timed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times, last, errors, answer = [], {}, [], {}
    for i, req in enumerate(requests):
        if i == warmup:
            cpu0 = cpu_s([server_pid])
        t = time.perf_counter()
        try:
            status, answer = post(conn, req)
        except (OSError, http.client.HTTPException) as err:
            errors.append(repr(err)[:200])
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        if status != 200:
            errors.append(f"{status} {str(answer)[:200]}")
            continue
        last = answer
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    conn.close()
    if not times:
        raise SystemExit(f"the feature server answered no request: {errors[:3]}")
    # the feature server's CPU ms per request (all its workers), mean over the timed requests
    server_cpu = round((cpu_s([server_pid]) - cpu0) * 1000 / max(1, len(times)), 2)
    return {**_percentiles(times), "server_cpu_mean_ms": server_cpu, "errors": len(errors),
            "first_errors": errors[:3]}, last


def bench_load(port: int, requests: list[dict[str, list]], clients: int, seconds: float) -> dict:
    """`clients` threads, each its own kept-alive connection, sending requests for `seconds`."""
    import threading

    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            try:
                status, _ = _post(conn, requests[i % len(requests)])
                ok = status == 200
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                if ok:
                    lat.append((time.perf_counter() - t) * 1000)
                else:
                    errors[0] += 1
            i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return {**_percentiles(lat), "clients": clients, "seconds": round(wall, 1),
            "requests_per_s": round(len(lat) / wall, 1), "errors": errors[0]}


def _start_redis(work: Path) -> tuple[subprocess.Popen, int]:
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    port = free_port()
    data = work / "redis"
    data.mkdir()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            if client.ping():
                return proc, port
        except redis.ConnectionError:
            time.sleep(0.2)
    raise SystemExit("redis-server did not answer")


def _same_vectors(http_last: dict, sdk_last: dict) -> bool:
    names = http_last["metadata"]["feature_names"]
    vals = dict(zip(names, (r["values"] for r in http_last["results"]), strict=True))
    return all(np.allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))
               for a, b in zip(vals["item_embeddings__transferable"],
                               sdk_last["item_embeddings__transferable"], strict=True))


# Feast's steps of one online read (feast 0.67), by the function that does each: the CPU of a request
# is charged to the innermost of these running (the rest is "other": request planning, response
# assembly, the store client's own Python).
def _feast_steps(kind: str) -> dict[str, tuple[object, str]]:
    from feast import utils
    from feast.online_response import OnlineResponse

    steps = {
        "prepare_entities": (utils, "_prepare_entities_to_read_from_online_store"),
        "unique_entities": (utils, "_get_unique_entities"),
        "entity_key_protos": (utils, "_get_entity_key_protos"),
        "populate_response": (utils, "_populate_response_from_feature_data"),
        "to_dict": (OnlineResponse, "to_dict"),
    }
    if kind == "sqlite":
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        steps["store_read_and_decode"] = (SqliteOnlineStore, "online_read")
    else:
        from feast.infra.online_stores.redis import RedisOnlineStore

        steps["redis_keys"] = (RedisOnlineStore, "_generate_redis_keys_for_entities")
        steps["store_read"] = (RedisOnlineStore, "_read_hash_fields")
        steps["decode"] = (RedisOnlineStore, "_convert_redis_values_to_protobuf")
    return steps


def breakdown(store, kind: str, requests: list[dict[str, list]], warmup: int) -> dict:
    """Where one in-process two-read request's CPU goes (thread CPU ms per request, mean): Feast's
    steps (_feast_steps), what each item view alone costs, and what the HTTP server and its client add
    to the same answer (Feast's convert_response_to_dict, the JSON text, the client's parse)."""
    from feast.feature_server_utils import convert_response_to_dict

    steps = _feast_steps(kind)
    spent = dict.fromkeys(steps, 0.0)
    stack: list[list] = []  # [name, started, charged to inner steps]

    def timed(name, fn):
        def call(*a, **kw):
            stack.append([name, time.thread_time(), 0.0])
            try:
                return fn(*a, **kw)
            finally:
                own, started, inner = stack.pop()
                took = time.thread_time() - started
                spent[own] += took - inner
                if stack:
                    stack[-1][2] += took

        return call

    saved = {name: (owner, attr, getattr(owner, attr)) for name, (owner, attr) in steps.items()}
    user_service = store.get_feature_service("ranker_user")
    items_service = store.get_feature_service("ranker_items")

    def read(req):
        store.get_online_features(features=user_service, entity_rows=[{"user_id": req["user_id"][0]}],
                                  full_feature_names=True).to_dict()
        return store.get_online_features(features=items_service, entity_rows=[{"item_id": x} for x in
                                                                               req["item_id"]],
                                          full_feature_names=True)

    timed_reqs = requests[warmup:]
    for req in requests[:warmup]:
        read(req).to_dict()
    try:
        for name, (owner, attr, fn) in saved.items():
            setattr(owner, attr, timed(name, fn))
        c0 = time.thread_time()
        for req in timed_reqs:
            read(req).to_dict()
        total = time.thread_time() - c0
    finally:
        for owner, attr, fn in saved.values():
            setattr(owner, attr, fn)
    n = len(timed_reqs)
    out = {"requests": n, "cpu_ms_per_request": round(total * 1000 / n, 2),
           "steps_cpu_ms": {k: round(v * 1000 / n, 2) for k, v in spent.items()}}
    out["steps_cpu_ms"]["other"] = round((total - sum(spent.values())) * 1000 / n, 2)
    views = {}
    for proj in items_service.feature_view_projections:
        refs = [f"{proj.name_to_use()}:{f.name}" for f in proj.features]
        c0 = time.thread_time()
        for req in timed_reqs:
            store.get_online_features(features=refs, entity_rows=[{"item_id": x} for x in req["item_id"]],
                                      full_feature_names=True).to_dict()
        views[proj.name_to_use()] = {"features": len(refs),
                                     "cpu_ms": round((time.thread_time() - c0) * 1000 / n, 2)}
    out["item_view_alone_cpu_ms"] = views
    convert = dumps = loads = encode = decode = 0.0
    for req in timed_reqs:
        response = read(req)
        c0 = time.thread_time()
        as_dict = convert_response_to_dict(response.proto)
        c1 = time.thread_time()
        text = json.dumps(as_dict)
        c2 = time.thread_time()
        json.loads(text)
        c3 = time.thread_time()
        wire = response.proto.SerializeToString()
        c4 = time.thread_time()
        type(response.proto).FromString(wire)
        c5 = time.thread_time()
        convert, dumps, loads = convert + c1 - c0, dumps + c2 - c1, loads + c3 - c2
        encode, decode = encode + c4 - c3, decode + c5 - c4
    out["http_adds_cpu_ms"] = {"convert_response_to_dict": round(convert * 1000 / n, 2),
                               "json_dumps": round(dumps * 1000 / n, 2),
                               "client_json_loads": round(loads * 1000 / n, 2),
                               "response_bytes": len(text)}
    # what Feast's gRPC feature server (`feast serve --type grpc`) sends instead: the response's protobuf
    out["grpc_would_add_cpu_ms"] = {"protobuf_serialize": round(encode * 1000 / n, 2),
                                    "client_protobuf_parse": round(decode * 1000 / n, 2),
                                    "response_bytes": len(wire)}
    return out


def run_store(kind: str, work: Path, args, reqs) -> dict:
    """SDK and HTTP, before and after, for one online store; the load test on the tuned server."""
    redis_proc = None
    features: dict = {"online_store": kind}
    if kind == "redis":
        redis_proc, rport = _start_redis(work)
        features["redis_connection_string"] = f"127.0.0.1:{rport}"
    try:
        ws, settings = build_world(work / f"ws_{kind}", args.users, args.items, args.dim, args.seed, features)
        out: dict = {}
        for tuned in (False, True):
            label = "after" if tuned else "before"
            store = sdk_store(ws, settings, tuned)
            sdk, sdk_last = bench_sdk(store, reqs, args.warmup)
            proc, port, ready_s = _start_server(ws, settings, tuned, work)
            try:
                http_res, http_last = bench_http(port, reqs, args.warmup, proc.pid)
                # the same features in two reads (ranker_user + ranker_items), the tuned store only
                split = ({"sdk": bench_sdk_split(store, reqs, args.warmup),
                          "http": bench_http(port, reqs, args.warmup, proc.pid, _post_split)[0],
                          "http_protobuf": bench_http(port, reqs, args.warmup, proc.pid,
                                                      _post_split_protobuf)[0]}
                         if tuned else None)
                load = (bench_load(port, reqs, args.clients, args.load_seconds)
                        if kind in args.load_stores else None)
            finally:
                _stop(proc)
            parts = breakdown(store, kind, reqs, args.warmup) if tuned else None
            if parts:
                print(f"{kind}: one two-read request in-process, CPU ms: {parts['cpu_ms_per_request']} "
                      f"({parts['steps_cpu_ms']}); each item view alone {parts['item_view_alone_cpu_ms']}; "
                      f"HTTP adds {parts['http_adds_cpu_ms']}; "
                      f"gRPC would add {parts['grpc_would_add_cpu_ms']}",
                      file=sys.stderr)
            out[label] = {"sdk": sdk, "http": http_res, "split": split, "breakdown": parts,
                          "http_server_ready_s": round(ready_s, 1),
                          "same_vectors": bool(_same_vectors(http_last, sdk_last)),
                          "load": load, "load_avg_1m": round(os.getloadavg()[0], 1)}
            print(f"{kind} {label}: sdk p50 {sdk['p50_ms']} / p99 {sdk['p99_ms']} ms (CPU p50 "
                  f"{sdk['cpu_p50_ms']} ms), http p50 {http_res['p50_ms']} / p99 {http_res['p99_ms']} ms "
                  f"(server CPU {http_res['server_cpu_mean_ms']} ms a request)"
                  + (f"; {load['clients']} clients: {load['requests_per_s']} req/s p99 {load['p99_ms']} ms, "
                     f"{load['errors']} errors" if load else "")
                  + (f"; two reads: sdk p50 {split['sdk']['p50_ms']} / p99 {split['sdk']['p99_ms']} ms "
                     f"(CPU p50 {split['sdk']['cpu_p50_ms']} ms), http p50 {split['http']['p50_ms']} / p99 "
                     f"{split['http']['p99_ms']} ms (server CPU {split['http']['server_cpu_mean_ms']} ms), "
                     f"http protobuf p50 {split['http_protobuf']['p50_ms']} / p99 "
                     f"{split['http_protobuf']['p99_ms']} ms (server CPU "
                     f"{split['http_protobuf']['server_cpu_mean_ms']} ms)"
                     if split else "")
                  + f" (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
        return out
    finally:
        if redis_proc is not None:
            _stop(redis_proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--load-seconds", type=float, default=30)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "redis"], choices=["sqlite", "redis"])
    parser.add_argument("--load-stores", nargs="*", default=["sqlite"], choices=["sqlite", "redis"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from rgcd.featurestore.online import default_workers

    work = Path(tempfile.mkdtemp(prefix="rgcd-bench-online-"))
    load_start = os.getloadavg()[0]
    try:
        reqs = _requests(args.requests + args.warmup, args.users, args.items, args.candidates, args.seed)
        stores = {kind: run_store(kind, work, args, reqs) for kind in args.stores}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine_detail": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_avg_1m_at_start": load_start,
                    "load_avg_1m_at_end": os.getloadavg()[0],
                    "note": "a 2-core machine shared with other developers' jobs while measured "
                            "(upper bounds; CPU ms a request are what the load does not inflate); "
                            "the client threads share the cores with the server"},
        "world": {"users": args.users, "items": args.items, "dim": args.dim, "candidates": args.candidates,
                  "requests": args.requests, "warmup": args.warmup,
                  "server_workers_after": default_workers(), "server_workers_before": 1},
        "goals": {"sqlite_sdk_p99_ms": 50, "sqlite_http_p99_ms": 80, "load_requests_per_s": 50,
                  "load_p99_ms": 250, "load_errors": 0},
        "stores": stores,
    }
    kind = next(iter(stores))
    after = stores[kind]["after"]
    split = after["split"]
    write_result(
        args.out, figures=result,
        claim=("online read of the ranker's features, 1 user + 200 items: SDK and HTTP, SQLite and Redis, "
               "before and after the online tuning, in one read (ranker) and two (ranker_user + "
               "ranker_items); 8 concurrent HTTP clients"),
        headline=(f"rgcd features serve over HTTP, 1 user + {args.candidates} items ({kind}, tuned), two "
                  f"reads: p50 {split['http']['p50_ms']:.0f} ms, p99 {split['http']['p99_ms']:.0f} ms, "
                  f"server CPU {split['http']['server_cpu_mean_ms']:.0f} ms a request"),
        peer=(f"the ranker service in one read: p50 {after['http']['p50_ms']:.0f} ms, "
              f"p99 {after['http']['p99_ms']:.0f} ms, server CPU {after['http']['server_cpu_mean_ms']:.0f} "
              "ms"),
        ratio=(f"{split['http']['server_cpu_mean_ms'] / after['http']['server_cpu_mean_ms']:.2f}x the server "
               "CPU a request"),
        machine=(f"{os.cpu_count()} cores, Python {platform.python_version()}, load {load_start:.1f} at the "
                 f"start, {os.getloadavg()[0]:.1f} at the end; shared: upper bounds"))
    for kind, res in stores.items():
        a, b = res["after"], res["before"]
        print(f"{kind}: sdk p99 {b['sdk']['p99_ms']} -> {a['sdk']['p99_ms']} ms, "
              f"http p99 {b['http']['p99_ms']} -> {a['http']['p99_ms']} ms")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
