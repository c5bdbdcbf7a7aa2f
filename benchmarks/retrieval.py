"""Claim: retrieval over the rooms on air is exact and fast enough to serve, side by side with its peer.

1. Filtered top-100 over the rooms on air with 1k, 10k and 100k live vectors in the store (64-d,
   inner product, 10% of them on air at the request time, the rest ended before it), through
   `embeddings.collections.RoomVectors` as `rgcd publish` builds it (on-air partition), against
   exact numpy (matmul + argpartition) over the same candidates: recall@100 and p50/p99 per query.
   The same queries with every room in one searched set (the on-air filter alone, no partition
   pruning) show why the design keeps the rooms on air apart.
2. HTTP U2I: `rgcd serve` on 127.0.0.1 over a demo-size world of vectors (20,000 users with
   vectors, 15,111 rooms of which 87 on air, like `rgcd demo-data` at 20,000 users; synthetic
   vectors of the agreed shape, stage 2 not being built yet), 8 concurrent keep-alive clients for
   30 s, random users, k = 50: p50/p99, requests/s, errors.
3. Seconds from POST /rooms/start to the room being retrieved (polling GET /retrieve/user).

    PYTHONPATH=. python benchmarks/retrieval.py [--sizes 1000,10000,100000] [--queries 200] [--seconds 30]

Writes benchmarks/results/retrieval.json.
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
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "retrieval.json"
DIM = 64
T = datetime(2025, 5, 19, tzinfo=UTC)


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(xs) * 1000, q)), 3)


def _rooms(n: int, on_air: int, rng: np.random.Generator):
    from embeddings.collections import Room

    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    rooms = []
    for i in range(n):
        start = T - timedelta(hours=1 + i % 50)
        end = None if i < on_air else T - timedelta(minutes=1 + i % 30)
        vector = vecs[i].tolist()
        rooms.append(Room(f"live:{i}", i % 997, start, end, float(i % 13), vector, vector))
    return rooms, vecs


def bench_search(root: Path, sizes: list[int], queries: int, naive_queries: int) -> list[dict]:
    from embeddings.collections import ENDED, METRICS, ON_AIR, RoomVectors, to_ms

    out = []
    for n in sizes:
        rng = np.random.default_rng(n)
        on_air = n // 10
        rooms, vecs = _rooms(n, on_air, rng)
        store = RoomVectors(str(root / f"bench_{n}.db"), "live_rooms", cache_s=60)
        t0 = time.perf_counter()
        name = store.create(f"bench-{n}", DIM, DIM)
        store.insert(name, rooms, 5_000)
        ended = max(to_ms(r.end) for r in rooms if r.end is not None)
        store.mark_published(name, n, ended)
        store.switch_alias(name)
        load_s = time.perf_counter() - t0
        cand = vecs[:on_air]  # the rooms on air at T
        qs = rng.normal(size=(queries, DIM)).astype(np.float32)
        k = min(100, on_air)
        exact_t, milvus_t, recalls = [], [], []
        for q in qs:
            t = time.perf_counter()
            scores = cand @ q
            top = np.argpartition(-scores, k - 1)[:k]
            exact = {f"live:{i}" for i in top}
            exact_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            hits = store.search("retrieval", q.tolist(), T, k)
            milvus_t.append(time.perf_counter() - t)
            recalls.append(len(exact & {h.item_id for h in hits}) / k)
        naive_t = []
        expr = f"start_ms <= {to_ms(T)} and (end_ms is null or end_ms > {to_ms(T)})"
        for q in qs[:naive_queries]:
            t = time.perf_counter()
            store.client.search(name, data=[q.tolist()], anns_field="retrieval", limit=k, filter=expr,
                                partition_names=[ON_AIR, ENDED], output_fields=["author_id"],
                                search_params={"metric_type": METRICS["retrieval"]})
            naive_t.append(time.perf_counter() - t)
        row = {"live_vectors": n, "on_air": on_air, "k": k, "queries": queries, "load_s": round(load_s, 2),
               "recall_at_k": round(float(np.mean(recalls)), 4),
               "milvus_p50_ms": _pct(milvus_t, 50), "milvus_p99_ms": _pct(milvus_t, 99),
               "exact_numpy_p50_ms": _pct(exact_t, 50), "exact_numpy_p99_ms": _pct(exact_t, 99),
               "all_rooms_searched_p50_ms": _pct(naive_t, 50), "all_rooms_searched_queries": len(naive_t)}
        row["milvus_over_exact_p50"] = round(row["milvus_p50_ms"] / row["exact_numpy_p50_ms"], 1)
        print(json.dumps(row), flush=True)
        out.append(row)
        store.close()
    # The floor of one call: a search over a 1-row partition costs what a round trip through
    # pymilvus' gRPC client and Milvus Lite's in-process server costs.
    return out


def floor_ms(root: Path) -> float:
    """p50 of a search over one room: the fixed cost of a Milvus Lite call (gRPC + Python)."""
    from embeddings.collections import RoomVectors

    rooms, _ = _rooms(1, 1, np.random.default_rng(0))
    store = RoomVectors(str(root / "floor.db"), "live_rooms", cache_s=60)
    name = store.create("floor", DIM, DIM)
    store.insert(name, rooms, 10)
    store.mark_published(name, 1, 0)
    store.switch_alias(name)
    times = []
    for _ in range(200):
        t = time.perf_counter()
        store.search("retrieval", rooms[0].retrieval, T, 1)
        times.append(time.perf_counter() - t)
    store.close()
    return _pct(times, 50)


def build_demo_world(ws_root: Path, users: int, rooms: int, on_air: int, photos: int, seed: int):
    """A demo-size serving world of synthetic stage-2 vectors (interfaces 1 and 2), published."""
    from embeddings.publish import publish
    from rgcd.config import Settings, Workspace
    from rgcd.featurestore import store as fs

    rng = np.random.default_rng(seed)
    ws = Workspace(ws_root).ensure()
    topics = 24
    centres = rng.normal(size=(topics, DIM)).astype(np.float32)
    room_ids = [f"live:{i}" for i in range(rooms)]
    room_topic = rng.integers(topics, size=rooms)
    starts = [T - timedelta(hours=int(h)) for h in rng.integers(1, 24 * 14, size=rooms)]
    ends = [None if i < on_air else T - timedelta(minutes=int(m)) for i, m in
            enumerate(rng.integers(1, 600, size=rooms))]
    starts = [min(s, e - timedelta(minutes=5)) if e else s for s, e in zip(starts, ends, strict=True)]
    none_ts = pl.Datetime("us", "UTC")
    pl.DataFrame({"item_id": room_ids, "live_id": list(range(rooms)),
                  "author_id": [i % 3000 for i in range(rooms)],
                  "start_timestamp": starts, "end_timestamp": ends, "event_timestamp": starts,
                  "created_timestamp": starts},
                 schema_overrides={"start_timestamp": none_ts, "end_timestamp": none_ts,
                                   "event_timestamp": none_ts, "created_timestamp": none_ts}
                 ).write_parquet(ws.marts / "live_schedule.parquet")
    photo_ids = [f"photo:{i}" for i in range(photos)]
    photo_topic = rng.integers(topics, size=photos)
    ids = photo_ids + room_ids
    topic_of = np.concatenate([photo_topic, room_topic])
    noise = rng.normal(size=(len(ids), DIM)).astype(np.float32) * 0.5
    vec = (centres[topic_of] + noise)
    now = datetime.now(UTC)
    version = "bench-demo"
    pl.DataFrame({"item_id": ids, "domain": ["photo"] * photos + ["live"] * rooms,
                  "transferable": vec.tolist(), "residual": (noise[:, :16]).tolist(),
                  "retrieval": vec.tolist(),
                  "model_version": [version] * len(ids), "event_timestamp": [T] * len(ids),
                  "created_timestamp": [now] * len(ids)},
                 schema_overrides={"transferable": pl.List(pl.Float32), "residual": pl.List(pl.Float32),
                                   "retrieval": pl.List(pl.Float32), "event_timestamp": none_ts,
                                   "created_timestamp": none_ts}
                 ).write_parquet(ws.feature_data / "item_embeddings.parquet")
    user_topic = rng.integers(topics, size=users)
    pl.DataFrame({"user_id": list(range(1, users + 1)), "user_vector": centres[user_topic].tolist(),
                  "model_version": [version] * users, "event_timestamp": [T] * users,
                  "created_timestamp": [now] * users},
                 schema_overrides={"user_vector": pl.List(pl.Float32), "event_timestamp": none_ts,
                                   "created_timestamp": none_ts}
                 ).write_parquet(ws.feature_data / "user_embeddings.parquet")
    reasoned = ids[: photos // 20] + room_ids
    names = [f"topic {t}" for t in range(topics)]
    tops = np.concatenate([photo_topic[: photos // 20], room_topic])
    pl.DataFrame({"item_id": reasoned, "vertical_domain": [names[t] for t in tops],
                  "key_subject": [f"subject {t}" for t in tops],
                  "content_theme": [f"theme {t}" for t in tops],
                  "teacher_id": ["metadata-baseline"] * len(reasoned),
                  "prompt_version": ["p"] * len(reasoned),
                  "event_timestamp": [T] * len(reasoned), "created_timestamp": [now] * len(reasoned)},
                 schema_overrides={"event_timestamp": none_ts, "created_timestamp": none_ts}
                 ).write_parquet(ws.feature_data / "item_reasoning.parquet")
    settings = Settings()
    t0 = time.perf_counter()
    fs.apply(ws, settings)
    fs.materialize(fs.feature_store(ws, settings))
    report = publish(ws, settings)
    return ws, report, time.perf_counter() - t0, centres[user_topic]


def _free_port() -> int:
    # Below Linux's ephemeral range (32768+): Milvus Lite's in-process gRPC server binds port 0 with
    # SO_REUSEPORT while the service starts, and could otherwise share a port picked here.
    import random

    while True:
        port = random.randint(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, dict]:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def bench_http(ws, users: int, seconds: float, clients: int, user_vectors: np.ndarray) -> dict:
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(ws.root / "serve.log", "w")  # noqa: SIM115 (closed with the server)
    command = [sys.executable, "-m", "rgcd.cli", "-w", str(ws.root), "serve", "--port", str(port)]
    server = subprocess.Popen(command,
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                if _get(conn, "/health")[0] == 200:
                    break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError("rgcd serve did not start") from None
                time.sleep(0.5)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # a fresh one after the wait
        for u in range(1, 21):  # warm-up
            _get(conn, f"/retrieve/user/{u}?k=50")
        latencies: list[float] = []
        errors: list[str] = []
        stop = time.time() + seconds

        def client(seed: int) -> None:
            rng = np.random.default_rng(seed)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while time.time() < stop:
                u = int(rng.integers(1, users + 1))
                t = time.perf_counter()
                try:
                    status, body = _get(c, f"/retrieve/user/{u}?k=50")
                except OSError as err:
                    errors.append(repr(err))
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    continue
                latencies.append(time.perf_counter() - t)
                if status != 200 or body["source"] != "user_vector" or not body["candidates"]:
                    errors.append(f"{status} {str(body)[:200]}")

        threads = [threading.Thread(target=client, args=(s,)) for s in range(clients)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        http_row = {"clients": clients, "seconds": round(wall, 1), "requests": len(latencies),
                    "errors": len(errors), "first_errors": errors[:3],
                    "requests_per_s": round(len(latencies) / wall, 1),
                    "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99)}
        # one client alone: the service time without queueing behind the other clients
        alone = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # uvicorn closes idle ones after 5 s
        for u in range(1, 201):
            t = time.perf_counter()
            _get(conn, f"/retrieve/user/{u}?k=50")
            alone.append(time.perf_counter() - t)
        http_row["one_client_p50_ms"], http_row["one_client_p99_ms"] = _pct(alone, 50), _pct(alone, 99)
        http_row["rooms_start_to_retrievable_s"] = _room_freshness(conn, user_vectors)
        return http_row
    except Exception:
        print(f"rgcd serve (exit code {server.poll()}) wrote:\n"
              f"{(ws.root / 'serve.log').read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _room_freshness(conn: http.client.HTTPConnection, user_vectors: np.ndarray) -> list[float]:
    """Seconds from POST /rooms/start until GET /retrieve/user ranks the room first, five rooms."""
    out = []
    for n in range(5):
        user = 1 + n
        room = f"live:{900_000 + n}"
        vector = (user_vectors[user - 1] * 10).tolist()  # far ahead of every room for this user
        body = json.dumps({"live_id": 900_000 + n, "author_id": 7, "transferable": vector,
                           "residual": [0.0] * 16, "retrieval": vector, "model_version": "bench-demo"})
        t0 = time.perf_counter()
        conn.request("POST", "/rooms/start", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
        while True:
            status, got = _get(conn, f"/retrieve/user/{user}?k=5")
            if status == 200 and got["candidates"] and got["candidates"][0]["item_id"] == room:
                break
            if time.perf_counter() - t0 > 30:
                raise RuntimeError(f"{room} not retrievable after 30 s")
        out.append(round(time.perf_counter() - t0, 4))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--naive-queries", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--rooms", type=int, default=15_111)
    ap.add_argument("--on-air", type=int, default=87)
    ap.add_argument("--photos", type=int, default=65_624)
    ap.add_argument("--skip-http", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs "
                               f"(load average {os.getloadavg()[0]:.1f} at start)",
                    "created": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        result["milvus_call_floor_p50_ms"] = floor_ms(root)
        result["search"] = bench_search(root, [int(s) for s in args.sizes.split(",")], args.queries,
                                        args.naive_queries)
        if not args.skip_http:
            ws, report, build_s, user_vectors = build_demo_world(root / "ws", args.users, args.rooms,
                                                                 args.on_air, args.photos, seed=0)
            result["demo_world"] = {"users": args.users, "rooms": args.rooms, "on_air": report.on_air,
                                    "photos": args.photos, "apply_materialize_publish_s": round(build_s, 1),
                                    "publish": report.one_line()}
            print(json.dumps(result["demo_world"]), flush=True)
            result["http_u2i"] = bench_http(ws, args.users, args.seconds, args.clients, user_vectors)
            print(json.dumps(result["http_u2i"]), flush=True)
        result["load_average_at_end"] = round(os.getloadavg()[0], 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
