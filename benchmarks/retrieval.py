"""Claim: retrieval over the rooms on air is exact and fast enough to serve, side by side with its peer.

1. Filtered top-100 over the rooms on air with 1k, 10k and 100k live vectors in the store (64-d,
   inner product, 10% of them on air at the request time, the rest ended before it), through
   `rgcd.embeddings.milvus_store.RoomVectors` as `rgcd publish` builds it (on-air partition), against
   exact numpy (matmul + argpartition) over the same candidates: recall@100 and p50/p99 per query.
   The same queries with every room in one searched set (the on-air filter alone, no partition
   pruning) show why the design keeps the rooms on air apart. `--backends lite,server` runs this part
   on the Milvus Lite file and on the packaged Milvus 2.3 server (started here with `rgcd milvus
   start`'s code in its own network namespace, reached on 127.0.0.1, stopped by pid), side by side.
2. HTTP U2I: `rgcd serve` on 127.0.0.1 over a demo-size world of vectors (20,000 users with
   vectors, 15,111 rooms of which 87 on air, like `rgcd demo-data` at 20,000 users; synthetic
   vectors of the agreed shape, stage 2 not being built yet), 8 concurrent keep-alive clients for
   30 s, random users, k = 50: p50/p99, requests/s, errors.
3. Seconds from POST /rooms/start to the room being retrieved (polling GET /retrieve/user).
4. With --workspace WS (a workspace after `rgcd run` / `rgcd publish`, e.g. at the demo size), parts
   2-3 run on its real published vectors instead of the synthetic world, after the check of issue
   11's "resolved when": `rgcd retrieve --user U` and `--item photo:P` (the command, then the library
   for more queries) return rooms all on air at the asked time (live_schedule), each with a score
   and a reason, from the published version; the service answers the same over HTTP. Rooms posted
   by part 3 go into WS's collection and its log of started rooms: use a copy.
   Part of one request's time: Feast's online read of the user, the Milvus search, the JSON.

    PYTHONPATH=. python benchmarks/retrieval.py [--sizes 1000,10000,100000] [--queries 200] [--seconds 30]
                                                [--workspace WS] [--backends lite,server] [--out F]

Writes benchmarks/results/retrieval.json (or --out) in the common format (claim, command, commit,
machine, figures, peer, ratio).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
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
sys.path.insert(0, str(ROOT / "tests"))
from results_format import write_result  # noqa: E402
from servers import free_port  # noqa: E402 (the tests' helper: a port Milvus Lite cannot share)

RESULTS = ROOT / "benchmarks" / "results" / "retrieval.json"
DIM = 64
# `--vectors clustered`: the demo's 153,374 rooms' `retrieval` vectors (make demo of a7b198d) keep
# 0.606 of their variance within 256 k-means clusters (`within_cluster_share`); a mixture of 256
# unit Gaussians in 64-d with this spread keeps 0.628 (spread 1.0: 0.545, 1.5: 0.700); `--workspace`
# measures both again (results' `figures.structure`).
CLUSTERS = 256
SPREAD = 1.25
CENTRES_SEED = 20_250_519
T = datetime(2025, 5, 19, tzinfo=UTC)


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(xs) * 1000, q)), 3)


def _vectors(n: int, rng: np.random.Generator, kind: str = "gaussian") -> np.ndarray:
    """n x DIM float32 vectors, one matrix (1M rooms: 256 MB; as Python lists they took ~3 GB):
    `gaussian` (no structure: no approximate index keeps its recall there) or `clustered` (a mixture of
    CLUSTERS Gaussians of spread SPREAD around centres drawn once: as much structure as the demo's
    rooms have, see SPREAD)."""
    if kind == "gaussian":
        return rng.normal(size=(n, DIM)).astype(np.float32)
    centres = np.random.default_rng(CENTRES_SEED).normal(size=(CLUSTERS, DIM)).astype(np.float32)
    noise = rng.normal(scale=SPREAD, size=(n, DIM)).astype(np.float32)
    noise += centres[rng.integers(0, CLUSTERS, n)]
    return noise


def within_cluster_share(vectors: np.ndarray, clusters: int = CLUSTERS, sample: int = 50_000,
                         iterations: int = 25) -> float:
    """The share of the vectors' variance left within `clusters` k-means clusters (Lloyd's iterations
    from a seeded draw, on a seeded sample): how much structure an approximate index can use."""
    import torch

    rng = np.random.default_rng(0)
    x = torch.from_numpy(vectors[rng.permutation(len(vectors))[:sample]].astype(np.float32))
    x = x - x.mean(0)
    centres = x[torch.from_numpy(rng.permutation(len(x))[:clusters])].clone()
    for _ in range(iterations):
        nearest = torch.cdist(x, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, nearest, x)
        counts = torch.bincount(nearest, minlength=clusters).unsqueeze(1)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    nearest = torch.cdist(x, centres).argmin(1)
    return round(float(((x - centres[nearest]) ** 2).sum(1).mean() / (x**2).sum(1).mean()), 3)


def _rooms(vecs: np.ndarray, on_air: int, lo: int = 0, hi: int | None = None) -> list:
    """Rooms lo..hi of the bench's schedule: the first `on_air` on air at T, the rest ended before it;
    only this window's vectors become Python lists."""
    from rgcd.embeddings.milvus_store import Room

    rooms = []
    for i, vector in enumerate(vecs[lo:hi].tolist(), start=lo):
        start = T - timedelta(hours=1 + i % 50)
        end = None if i < on_air else T - timedelta(minutes=1 + i % 30)
        rooms.append(Room(f"live:{i}", i % 997, start, end, float(i % 13), vector, vector))
    return rooms


def _insert_windows(store, name: str, vecs: np.ndarray, on_air: int, window: int) -> float:
    """Insert every room the way `rgcd publish` does: the partitions' layout from the whole set's
    statistics, then window by window (`retrieval.publish_batch_rooms`), then one flush (and, with an
    approximate index, its build); a window's rooms are the only Python objects alive at a time.
    Returns the seconds of the flush."""
    from rgcd.embeddings.milvus_store import RoomStats

    n = len(vecs)
    stats = RoomStats()
    for lo in range(0, n, window):
        stats.add(_rooms(vecs, on_air, lo, lo + window))
    layout = store.begin_insert(name, stats)
    for lo in range(0, n, window):
        store.insert_window(name, _rooms(vecs, on_air, lo, lo + window), 5_000, layout)
    t = time.perf_counter()
    store.flush(name)
    return time.perf_counter() - t


def _compaction_settled_s(store, name: str, budget_s: float) -> float:
    """Seconds until no segment waits for an index build: the server merges the sealed segments
    after a publish (compaction) and indexes the merged ones again in the background; the searches
    are measured after that, not beside it (at most `budget_s`: the row then says so)."""
    t = time.perf_counter()
    while any(state.get("pending_index_rows", 0) for state in store.index_state(name)):
        if time.perf_counter() - t > budget_s:
            print(f"compaction still re-indexing after {budget_s:.0f} s: measuring beside it", flush=True)
            break
        time.sleep(2)
    return time.perf_counter() - t


def _peak_rss_mib() -> int:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def bench_search(root: Path, sizes: list[int], queries: int, naive_queries: int,
                 server_uri: str = "", server_pid: int = 0, budget_s: float = 300,
                 window: int = 50_000, indexes: tuple[str, ...] = ("FLAT",),
                 kind: str = "gaussian") -> list[dict]:
    """Part 1 on the Milvus Lite file, or on the Milvus server at `server_uri` (database rgcd_bench).

    Each size's queries stop after `budget_s` seconds of searching (the row says how many ran): Milvus
    Lite walks every primary key it searches in Python, so at 1M rooms its searches, and above all the
    search over every partition, may not finish a full set in time. A size's collection is dropped
    after it is measured, so the server holds one size at a time (its RSS is recorded per size). On
    the server each of `indexes` (`retrieval.index.type`, default parameters) is built and searched
    in turn over the same vectors and queries; Milvus Lite is FLAT whatever is asked."""
    from rgcd.config import IndexConfig
    from rgcd.embeddings.milvus_store import RoomVectors, to_ms

    out = []
    if server_uri:
        from pymilvus import MilvusClient

        admin = MilvusClient(uri=server_uri)
        if "rgcd_bench" not in admin.list_databases():
            admin.create_database("rgcd_bench")
        admin.close()
    for n, index in ((n, index) for n in sizes for index in (indexes if server_uri else ("FLAT",))):
        on_air = n // 10
        vecs = _vectors(n, np.random.default_rng(n), kind)
        store = (RoomVectors(server_uri, "live_rooms", cache_s=60, db_name="rgcd_bench") if server_uri
                 else RoomVectors(str(root / f"bench_{n}.db"), "live_rooms", cache_s=60))
        print(f"{store.dialect.name}, {index}: inserting {n:,} {kind} rooms ({on_air:,} on air) at "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        t0 = time.perf_counter()
        name = store.create(f"bench-{n}", DIM, DIM, index=IndexConfig(type=index))
        flush_s = _insert_windows(store, name, vecs, on_air, window)
        settled_s = _compaction_settled_s(store, name, budget_s) if index != "FLAT" else 0.0
        # the last end of the bench's schedule (room on_air.. ends 1-30 minutes before T)
        store.mark_published(name, n, to_ms(T - timedelta(minutes=1)))
        store.switch_alias(name)
        load_s = time.perf_counter() - t0
        row = {"backend": store.dialect.name, "index": store.current().index, "vectors": kind,
               "live_vectors": n, "on_air": on_air, "load_s": round(load_s, 2),
               "flush_and_index_s": round(flush_s, 2), "compaction_reindexed_s": round(settled_s, 2),
               "load_average_before_queries": round(os.getloadavg()[0], 2)}
        queries_rng = np.random.default_rng(n + 1)  # the same queries for every index
        row |= _timed_queries(store, name, vecs[:on_air], queries_rng, queries, naive_queries, budget_s, kind)
        if server_pid:
            from rgcd.embeddings import milvus_server as ms

            row["server_rss_mib"] = round(ms.rss_bytes(server_pid) / 2**20)
        else:
            row["process_peak_rss_mib"] = _peak_rss_mib()
        print(json.dumps(row), flush=True)
        out.append(row)
        store.drop(name)
        store.close()
        del vecs
    return out


def _timed_queries(store, name: str, cand: np.ndarray, rng: np.random.Generator, queries: int,
                   naive_queries: int, budget_s: float, kind: str = "gaussian") -> dict:
    """Top-k over the rooms on air at T through the store vs exact numpy over `cand`, recall@k; then
    the same filter over every partition (no pruning). Each loop stops after its share of `budget_s`."""
    from rgcd.embeddings.milvus_store import to_ms

    qs = _vectors(queries, rng, kind)  # users drawn like the rooms: near the same clusters, if any
    k = min(100, len(cand))
    exact_t, milvus_t, recalls = [], [], []
    stop = time.perf_counter() + budget_s * 0.75
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
        if time.perf_counter() > stop:
            break
    naive_t = []
    expr = store._window(store.current(), to_ms(T))[1]
    physical = store._holding(name, "retrieval")
    everything = store.client.list_partitions(physical)
    stop = time.perf_counter() + budget_s * 0.25
    for q in qs[:naive_queries]:
        t = time.perf_counter()
        store.client.search(physical, data=[q.tolist()], anns_field="retrieval", limit=k, filter=expr,
                            partition_names=everything, **store.dialect.read, output_fields=["author_id"],
                            search_params=store.current().search_params("retrieval", k))
        naive_t.append(time.perf_counter() - t)
        if time.perf_counter() > stop:
            break
    row = {
        "k": k,
        "queries": len(milvus_t),
        "queries_asked": queries,
        "recall_at_k": round(float(np.mean(recalls)), 4),
        "milvus_p50_ms": _pct(milvus_t, 50),
        "milvus_p99_ms": _pct(milvus_t, 99),
        "exact_numpy_p50_ms": _pct(exact_t, 50),
        "exact_numpy_p99_ms": _pct(exact_t, 99),
        "all_rooms_searched_p50_ms": _pct(naive_t, 50),
        "all_rooms_searched_queries": len(naive_t),
    }
    if len(milvus_t) < queries or len(naive_t) < min(naive_queries, queries):
        row["stopped_by_budget_s"] = budget_s
    row["milvus_over_exact_p50"] = round(row["milvus_p50_ms"] / row["exact_numpy_p50_ms"], 1)
    return row


def bench_on_server(root: Path, sizes: list[int], queries: int, naive_queries: int, budget_s: float,
                    indexes: tuple[str, ...] = ("FLAT",), kind: str = "gaussian") -> dict:
    """Part 1 on the packaged Milvus 2.3 server (`rgcd milvus start`'s code, data under `root`, its
    own network namespace, reached on 127.0.0.1): its start time, its call floors, the searches, its
    resident memory with each size loaded; stopped by pid."""
    from rgcd.embeddings import milvus_server as ms

    t0 = time.perf_counter()
    state = ms.start(root, free_port())
    started = time.perf_counter() - t0
    try:
        floors = server_floors_ms(state.uri)
        rows = bench_search(root, sizes, queries, naive_queries, server_uri=state.uri, server_pid=state.pid,
                            budget_s=budget_s, indexes=indexes, kind=kind)
        version = ms.check_reachable(state.uri)
    finally:
        t1 = time.perf_counter()
        ms.stop(root)
        stopped = time.perf_counter() - t1
    return {"version": version, "start_s": round(started, 1), "stop_s": round(stopped, 1)} | floors | {
        "rows": rows}


def _search_one_room_ms(store) -> float:
    """p50 of 200 searches of a store's one published room: what any search through it costs."""
    rooms = _rooms(_vectors(1, np.random.default_rng(0)), 1)
    name = store.create("floor", DIM, DIM)
    store.insert(name, rooms, 10)
    store.mark_published(name, 1, 0)
    store.switch_alias(name)
    times = []
    for _ in range(200):
        t = time.perf_counter()
        store.search("retrieval", rooms[0].retrieval, T, 1)
        times.append(time.perf_counter() - t)
    store.drop(name)
    store.close()
    return _pct(times, 50)


def floor_ms(root: Path) -> float:
    """p50 of a search over one room: the fixed cost of a Milvus Lite call (gRPC + Python)."""
    from rgcd.embeddings.milvus_store import RoomVectors

    return _search_one_room_ms(RoomVectors(str(root / "floor.db"), "live_rooms", cache_s=60))


def server_floors_ms(uri: str) -> dict:
    """The server's floors: a search over one room (proxy, query node, reduce, the client's Python)
    and the cheapest call there is (the server's version: one gRPC round trip to the proxy)."""
    from pymilvus import MilvusClient

    from rgcd.embeddings.milvus_store import RoomVectors

    client, times = MilvusClient(uri=uri), []
    for _ in range(200):
        t = time.perf_counter()
        client.get_server_version()
        times.append(time.perf_counter() - t)
    client.close()
    return {"round_trip_p50_ms": _pct(times, 50),
            "search_one_room_p50_ms": _search_one_room_ms(RoomVectors(uri, "floor_rooms", cache_s=60))}


def structure(kind: str, workspace: Path | None) -> dict:
    """The within-cluster share of the searched vectors (and of a workspace's rooms' `retrieval`
    vectors, the figure `--vectors clustered` is set from)."""
    out = {"vectors": kind, "clusters": CLUSTERS,
           "within_cluster_share": within_cluster_share(_vectors(200_000, np.random.default_rng(0), kind))}
    if workspace:
        rooms = pl.read_parquet(workspace / "feature_data" / "item_embeddings.parquet",
                                columns=["domain", "retrieval"]).filter(pl.col("domain") == "live")
        out["workspace_rooms"] = rooms.height
        out["workspace_within_cluster_share"] = within_cluster_share(np.array(rooms["retrieval"].to_list()))
    return out


def build_demo_world(ws_root: Path, users: int, rooms: int, on_air: int, photos: int, seed: int):
    """A demo-size serving world of synthetic stage-2 vectors (interfaces 1 and 2), published."""
    from rgcd.config import Settings, Workspace
    from rgcd.embeddings.publish import publish
    from rgcd.featurestore import store as fs

    rng = np.random.default_rng(seed)
    ws = Workspace(ws_root).ensure()
    topics = 24
    centres = rng.normal(size=(topics, DIM)).astype(np.float32)
    room_ids = [f"live:{i}" for i in range(rooms)]
    room_topic = rng.integers(topics, size=rooms)
    starts = [T - timedelta(hours=int(h)) for h in rng.integers(1, 24 * 14, size=rooms)]
    ends = [
        None if i < on_air else T - timedelta(minutes=int(m))
        for i, m in enumerate(rng.integers(1, 600, size=rooms))
    ]
    starts = [min(s, e - timedelta(minutes=5)) if e else s for s, e in zip(starts, ends, strict=True)]
    none_ts = pl.Datetime("us", "UTC")
    pl.DataFrame(
        {
            "item_id": room_ids,
            "live_id": list(range(rooms)),
            "author_id": [i % 3000 for i in range(rooms)],
            "start_timestamp": starts,
            "end_timestamp": ends,
            "event_timestamp": starts,
            "created_timestamp": starts,
        },
        schema_overrides={
            "start_timestamp": none_ts,
            "end_timestamp": none_ts,
            "event_timestamp": none_ts,
            "created_timestamp": none_ts,
        },
    ).write_parquet(ws.marts / "live_schedule.parquet")
    photo_ids = [f"photo:{i}" for i in range(photos)]
    photo_topic = rng.integers(topics, size=photos)
    ids = photo_ids + room_ids
    topic_of = np.concatenate([photo_topic, room_topic])
    noise = rng.normal(size=(len(ids), DIM)).astype(np.float32) * 0.5
    vec = centres[topic_of] + noise
    now = datetime.now(UTC)
    version = "bench-demo"
    pl.DataFrame(
        {
            "item_id": ids,
            "domain": ["photo"] * photos + ["live"] * rooms,
            "transferable": vec.tolist(),
            "residual": (noise[:, :16]).tolist(),
            "retrieval": vec.tolist(),
            "model_version": [version] * len(ids),
            "event_timestamp": [T] * len(ids),
            "created_timestamp": [now] * len(ids),
        },
        schema_overrides={
            "transferable": pl.List(pl.Float32),
            "residual": pl.List(pl.Float32),
            "retrieval": pl.List(pl.Float32),
            "event_timestamp": none_ts,
            "created_timestamp": none_ts,
        },
    ).write_parquet(ws.feature_data / "item_embeddings.parquet")
    user_topic = rng.integers(topics, size=users)
    pl.DataFrame(
        {
            "user_id": list(range(1, users + 1)),
            "user_vector": centres[user_topic].tolist(),
            "model_version": [version] * users,
            "event_timestamp": [T] * users,
            "created_timestamp": [now] * users,
        },
        schema_overrides={
            "user_vector": pl.List(pl.Float32),
            "event_timestamp": none_ts,
            "created_timestamp": none_ts,
        },
    ).write_parquet(ws.feature_data / "user_embeddings.parquet")
    reasoned = ids[: photos // 20] + room_ids
    names = [f"topic {t}" for t in range(topics)]
    tops = np.concatenate([photo_topic[: photos // 20], room_topic])
    pl.DataFrame(
        {
            "item_id": reasoned,
            "vertical_domain": [names[t] for t in tops],
            "key_subject": [f"subject {t}" for t in tops],
            "content_theme": [f"theme {t}" for t in tops],
            "teacher_id": ["metadata-baseline"] * len(reasoned),
            "prompt_version": ["p"] * len(reasoned),
            "event_timestamp": [T] * len(reasoned),
            "created_timestamp": [now] * len(reasoned),
        },
        schema_overrides={"event_timestamp": none_ts, "created_timestamp": none_ts},
    ).write_parquet(ws.feature_data / "item_reasoning.parquet")
    settings = Settings()
    t0 = time.perf_counter()
    fs.apply(ws, settings)
    fs.materialize(fs.feature_store(ws, settings))
    report = publish(ws, settings)
    return ws, report, time.perf_counter() - t0, centres[user_topic]


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, dict]:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def _cli_answer(ws, *args: str) -> dict:
    """`rgcd -w WS retrieve ... --json` as its own process (the command of the issue's check)."""
    done = subprocess.run(
        [sys.executable, "-m", "rgcd.cli", "-w", str(ws.root), "retrieve", *args, "--json"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"rgcd retrieve {' '.join(args)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return json.loads(done.stdout)


def _on_air_problems(answer: dict, intervals: dict, at: datetime) -> list[str]:
    """What is wrong with an answer: a candidate not on air at `at`, or without score or reason."""
    wrong = []
    for c in answer["candidates"]:
        start, end = intervals.get(c["item_id"], (None, None))
        if start is None or not (start <= at and (end is None or at < end)):
            wrong.append(f"{c['item_id']} not on air at {at.isoformat()}")
        if not isinstance(c["score"], float) or not c["reason"]:
            wrong.append(f"{c['item_id']} without score or reason")
    return wrong


def demo_check(ws, queries: int, seed: int = 0) -> tuple[dict, list[tuple[str, str]]]:
    """Issue 11's check on a published workspace; returns figures and the (path, CLI JSON) pairs the
    service must answer the same."""
    from rgcd.embeddings.retrieval import Retriever

    rng = np.random.default_rng(seed)
    schedule = pl.read_parquet(
        ws.marts / "live_schedule.parquet", columns=["item_id", "start_timestamp", "end_timestamp"]
    )
    intervals = {r[0]: (r[1], r[2]) for r in schedule.iter_rows()}
    started = ws.feature_data / "rooms_started.parquet"  # rooms pushed since the build: on air from start
    if started.exists():
        for r in pl.read_parquet(
            started, columns=["item_id", "start_timestamp", "end_timestamp"]
        ).iter_rows():
            intervals[r[0]] = (r[1], r[2])
    users = pl.read_parquet(ws.feature_data / "user_embeddings.parquet", columns=["user_id"])["user_id"]
    photos = pl.read_parquet(
        ws.feature_data / "item_embeddings.parquet", columns=["item_id", "domain"]
    ).filter(pl.col("domain") == "photo")["item_id"]
    # the busiest evening hour of the log's last day (a historical request) and now
    last = schedule["start_timestamp"].max()
    evening = last.replace(hour=20, minute=0, second=0, microsecond=0)
    now = datetime.now(UTC)
    user, photo = int(users[int(rng.integers(users.len()))]), photos[int(rng.integers(photos.len()))]
    out: dict = {"times": {"now": now.isoformat(timespec="seconds"), "evening": evening.isoformat()}}
    pairs, problems, counts = [], [], {}
    for name, at in (("now", now), ("evening", evening)):
        stamp = at.isoformat().replace("+00:00", "Z")
        for what, args in (("user", ["--user", str(user)]), ("item", ["--item", photo])):
            t = time.perf_counter()
            answer = _cli_answer(ws, *args, "--at", stamp, "--k", "50")
            counts[f"cli_{what}_{name}"] = {
                "candidates": len(answer["candidates"]),
                "source": answer["source"],
                "model_version": answer["model_version"],
                "wall_s": round(time.perf_counter() - t, 1),
                "first": answer["candidates"][0] if answer["candidates"] else None,
            }
            problems += _on_air_problems(answer, intervals, at)
            path = (
                f"/retrieve/user/{user}" if what == "user" else f"/retrieve/item/{photo}"
            ) + f"?at={stamp}&k=50"
            pairs.append((path, answer))
    retriever = Retriever(ws, ws.settings())
    try:
        published = retriever.published()
        versions, sources, shared, answered = set(), {}, 0, 0
        for name, at in (("now", now), ("evening", evening)):
            t0 = time.perf_counter()
            for _ in range(queries):
                answers = [
                    retriever.for_user(int(users[int(rng.integers(users.len()))]), at, 50),
                    retriever.for_item(photos[int(rng.integers(photos.len()))], at, 50),
                ]
                for a in answers:
                    versions.add(a.model_version)
                    sources[a.source] = sources.get(a.source, 0) + 1
                    problems += _on_air_problems(a.as_json(), intervals, at)
                    shared += sum("shares the" in c.reason for c in a.candidates)
                    answered += len(a.candidates)
            out[f"library_{name}_mean_ms"] = round((time.perf_counter() - t0) / (2 * queries) * 1000, 1)
        out.update(
            {
                "published": {"model_version": published.model_version, "collection": published.collection},
                "library_queries": 4 * queries,
                "versions_answered": sorted(versions),
                "sources": sources,
                "candidates": answered,
                "candidates_sharing_a_teacher_topic": shared,
                "problems": problems[:10],
                "problem_count": len(problems),
                "cli": counts,
            }
        )
    finally:
        retriever.close()
    return out, pairs


def request_split(ws, requests: int) -> dict:
    """Where one U2I request's time goes, in-process: Feast online read, Milvus search, JSON."""
    from rgcd.embeddings.retrieval import Retriever

    users = pl.read_parquet(ws.feature_data / "user_embeddings.parquet", columns=["user_id"])["user_id"]
    retriever = Retriever(ws, ws.settings())
    parts: dict[str, list[float]] = {"feast_online_read": [], "milvus_search": [], "json": [], "whole": []}
    online, search = retriever.online, retriever.rooms.search_many

    def timed(name, fn):
        def call(*args):
            t = time.perf_counter()
            got = fn(*args)
            parts[name].append(time.perf_counter() - t)
            return got

        return call

    try:
        retriever.online, retriever.rooms.search_many = (
            timed("feast_online_read", online),
            timed("milvus_search", search),
        )
        for n in range(requests + 20):
            t = time.perf_counter()
            answer = retriever.for_user(int(users[n % users.len()]), None, 50)
            t2 = time.perf_counter()
            json.dumps(answer.as_json(), separators=(",", ":"))
            if n >= 20:  # after a warm-up
                parts["json"].append(time.perf_counter() - t2)
                parts["whole"].append(t2 - t)
    finally:
        retriever.close()
    return {
        k: {"p50_ms": _pct(v[-requests:], 50), "p99_ms": _pct(v[-requests:], 99)} for k, v in parts.items()
    }


def bench_http(
    ws,
    users: int | list[int],
    seconds: float,
    clients: int,
    user_vectors: dict[int, list[float]],
    version: str = "bench-demo",
    same: list[tuple[str, dict]] = (),
) -> dict:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(ws.root / "serve.log", "w")  # noqa: SIM115 (closed with the server)
    command = [sys.executable, "-m", "rgcd.cli", "-w", str(ws.root), "serve", "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
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
        ids = list(range(1, users + 1)) if isinstance(users, int) else users
        differ = []
        for path, expected in same:  # the service answers what the command answered
            status, body = _get(conn, path)
            if status != 200 or [(c["item_id"], c["score"]) for c in body["candidates"]] != [
                (c["item_id"], c["score"]) for c in expected["candidates"]
            ]:
                differ.append(path)
        for u in ids[:20]:  # warm-up
            _get(conn, f"/retrieve/user/{u}?k=50")
        latencies: list[float] = []
        errors: list[str] = []
        stop = time.time() + seconds

        def client(seed: int) -> None:
            rng = np.random.default_rng(seed)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while time.time() < stop:
                u = ids[int(rng.integers(len(ids)))]
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
        http_row = {
            "clients": clients,
            "seconds": round(wall, 1),
            "requests": len(latencies),
            "errors": len(errors),
            "first_errors": errors[:3],
            "requests_per_s": round(len(latencies) / wall, 1),
            "p50_ms": _pct(latencies, 50),
            "p99_ms": _pct(latencies, 99),
        }
        # one client alone: the service time without queueing behind the other clients
        alone = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # uvicorn closes idle ones after 5 s
        for u in ids[:200]:
            t = time.perf_counter()
            _get(conn, f"/retrieve/user/{u}?k=50")
            alone.append(time.perf_counter() - t)
        http_row["one_client_p50_ms"], http_row["one_client_p99_ms"] = _pct(alone, 50), _pct(alone, 99)
        if same:
            http_row["same_as_cli"] = f"{len(same) - len(differ)} of {len(same)}"
            http_row["differ"] = differ
        http_row["rooms_start_to_retrievable_s"] = _room_freshness(conn, user_vectors, version)
        return http_row
    except Exception:
        print(
            f"rgcd serve (exit code {server.poll()}) wrote:\n{(ws.root / 'serve.log').read_text()[-3000:]}",
            file=sys.stderr,
        )
        raise
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _room_freshness(
    conn: http.client.HTTPConnection, vectors: dict[int, list[float]], version: str
) -> list[float]:
    """Seconds from POST /rooms/start until GET /retrieve/user ranks the room first, five rooms (a
    room carries its user's vector x 10, far ahead of every room for that user; it ends after)."""
    out = []
    base = 900_000_000 + int(time.time()) % 100_000 * 10  # new ids on every run
    for n, (user, vector) in enumerate(list(vectors.items())[:5]):
        room = f"live:{base + n}"
        vector = [10 * x for x in vector]
        body = json.dumps(
            {
                "live_id": base + n,
                "author_id": 7,
                "transferable": vector,
                "residual": [0.0] * len(vector),
                "retrieval": vector,
                "model_version": version,
            }
        )
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
        # off air again, so that a later run's room (same vector) is not tied with it
        conn.request("POST", f"/rooms/{room}/end")
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--naive-queries", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=300,
                    help="seconds of searching per backend and size (3/4 filtered, 1/4 every partition); "
                         "a row that stopped early says so")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--rooms", type=int, default=15_111)
    ap.add_argument("--on-air", type=int, default=87)
    ap.add_argument("--photos", type=int, default=65_624)
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="a published workspace (a copy: part 3 adds rooms): check it, serve it; with --skip-http, "
             "only its rooms' structure is measured beside the searched vectors'",
    )
    ap.add_argument("--check-queries", type=int, default=50)
    ap.add_argument("--split-requests", type=int, default=200)
    ap.add_argument("--backends", default="lite",
                    help="part 1 on: lite, server (the packaged Milvus 2.3 server, started and stopped "
                         "here), or lite,server")
    ap.add_argument("--index", default="FLAT",
                    help="the server's indexes to build and search in turn, of FLAT, HNSW, IVF_FLAT "
                         "(retrieval.index's defaults); Milvus Lite is FLAT")
    ap.add_argument("--vectors", choices=("gaussian", "clustered"), default="gaussian",
                    help="gaussian: no structure; clustered: as much structure as the demo's rooms have")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    indexes = tuple(args.index.split(","))
    root = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs "
               f"(load average {os.getloadavg()[0]:.1f} at start")
    result: dict = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        result["milvus_call_floor_p50_ms"] = floor_ms(root)
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else []
        if sizes and "lite" in args.backends.split(","):
            result["search"] = bench_search(root, sizes, args.queries, args.naive_queries,
                                            budget_s=args.budget_s, kind=args.vectors)
        if sizes and "server" in args.backends.split(","):
            result["search_server"] = bench_on_server(root, sizes, args.queries, args.naive_queries,
                                                      args.budget_s, indexes, args.vectors)
        if sizes:
            result["structure"] = structure(args.vectors, args.workspace)
        if args.workspace and not args.skip_http:
            from rgcd.config import Workspace
            from rgcd.embeddings.retrieval import Retriever

            ws = Workspace(args.workspace.resolve())
            result["workspace_check"], same = demo_check(ws, args.check_queries)
            print(json.dumps(result["workspace_check"]), flush=True)
            result["request_split"] = request_split(ws, args.split_requests)
            print(json.dumps(result["request_split"]), flush=True)
            version = result["workspace_check"]["published"]["model_version"]
            vectors = pl.read_parquet(ws.feature_data / "user_embeddings.parquet").filter(
                pl.col("model_version") == version
            )
            ids = vectors["user_id"].to_list()
            firsts = {
                int(u): list(v) for u, v in vectors.head(5).select("user_id", "user_vector").iter_rows()
            }
            retriever = Retriever(ws, ws.settings())
            on_air = retriever.rooms.count(retriever.published().collection, "on_air")
            retriever.close()
            result["demo_world"] = {
                "workspace": str(ws.root),
                "users_with_vectors": len(ids),
                "rooms_in_on_air_partition": on_air,
            }
            result["http_u2i"] = bench_http(ws, ids, args.seconds, args.clients, firsts, version, same)
            print(json.dumps(result["http_u2i"]), flush=True)
        elif not args.skip_http:
            ws, report, build_s, user_vectors = build_demo_world(
                root / "ws", args.users, args.rooms, args.on_air, args.photos, seed=0
            )
            result["demo_world"] = {
                "users": args.users,
                "rooms": args.rooms,
                "on_air": report.on_air,
                "photos": args.photos,
                "apply_materialize_publish_s": round(build_s, 1),
                "publish": report.one_line(),
            }
            print(json.dumps(result["demo_world"]), flush=True)
            firsts = {u: user_vectors[u - 1].tolist() for u in range(1, 6)}
            result["http_u2i"] = bench_http(ws, args.users, args.seconds, args.clients, firsts)
            print(json.dumps(result["http_u2i"]), flush=True)
        result["load_average_at_end"] = round(os.getloadavg()[0], 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    end_load = result.get("load_average_at_end")
    write_result(args.out, figures=result, machine=f"{machine}, {end_load} at the end)",
                 claim=("filtered top-100 retrieval over the rooms on air through Milvus (Lite as published, "
                        "or the packaged server) vs exact numpy; HTTP U2I"),
                 **_headline(result))
    print(f"wrote {args.out}")


def _headline(result: dict) -> dict:
    """The table's figure, peer and ratio: the largest size searched (and 10k), Lite and the server's
    indexes side by side, against exact numpy; the HTTP load when measured."""
    parts, peer, ratio = [], None, None
    lite = result.get("search") or []
    server = result.get("search_server", {}).get("rows", [])
    rows = lite + server
    if rows:
        n = max(r["live_vectors"] for r in rows)

        def name(r: dict) -> str:
            lite = r.get("backend", "milvus-lite").startswith("milvus-lite")
            return "Lite" if lite else f"server {r.get('index', 'FLAT')}"

        big = [r for r in rows if r["live_vectors"] == n]
        parts.append(f"{n:,} live {big[0].get('vectors', 'gaussian')} vectors ({big[0]['on_air']:,} on air): "
                     + ", ".join(f"{name(r)} p50 {r['milvus_p50_ms']:.1f} ms at recall@{r['k']} "
                                 f"{r['recall_at_k']:.2f}" for r in big))
        small = [f"{name(r)} {r['milvus_p50_ms']:.1f} ms" for r in rows if r["live_vectors"] == 10_000]
        if small and n != 10_000:
            parts.append("at 10,000: " + ", ".join(small))
        peer = (f"exact numpy (matmul + argpartition) over the same candidates: p50 "
                f"{min(r['exact_numpy_p50_ms'] for r in big)} ms at {n:,}")
        ratio = ", ".join(f"{name(r)} {r['milvus_over_exact_p50']}x" for r in big) + f" exact at p50, {n:,}"
    if result.get("http_u2i"):
        h = result["http_u2i"]
        parts.append(f"HTTP U2I, {h['clients']} clients: p50 {h['p50_ms']:.0f} / p99 {h['p99_ms']:.0f} ms, "
                     f"{h['requests_per_s']} req/s, {h['errors']} errors")
    return {"headline": "; ".join(parts) or "no figures", "peer": peer, "ratio": ratio}


if __name__ == "__main__":
    main()
