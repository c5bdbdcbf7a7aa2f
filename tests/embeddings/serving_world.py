"""A tiny serving world built in code: marts, stage-2 vectors of the agreed shape, teacher knowledge.

Stands in for what `rgcd transfer` writes (interfaces 1 and 2) while stage 2 is built in parallel:
unit vectors in the directions of topic centroids plus noise, so the nearest rooms of a user or a
video share its topic.

- 4 topics; photos photo:1..60 (topic = id % 4); rooms live:1000..1039 (topic = k % 4), author
  500 + k % 10; room k starts at T0 - 40 h + k h and runs 2 h, except every third (k % 3 == 0),
  which is still on air. A room k >= 36 has no reasoning.
- users 1..19 (topic = u % 4) have features; 1..16 have a vector; 1..18 played five photos of
  their topic; user 19 has neither vector nor history; user 999 is unknown.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "feature_repo"))

from feast_marts import write_feature_data, write_mart  # noqa: E402
from servers import wait_until_healthy  # noqa: E402

from rgcd.config import Settings, Workspace  # noqa: E402

T0 = datetime(2025, 5, 10, tzinfo=UTC)  # the training cut
TOPICS = ["Food", "Gaming", "Music", "Sports"]
SUBJECTS = ["noodles", "ranked match", "guitar cover", "basketball"]
DIM = 8
ROOMS = [f"live:{1000 + k}" for k in range(40)]
PHOTOS = [f"photo:{p}" for p in range(1, 61)]
USERS_WITH_VECTORS = list(range(1, 17))
USERS_WITH_HISTORY = list(range(1, 19))
USERS = list(range(1, 20))


def room_topic(item_id: str) -> int:
    return (int(item_id.split(":")[1]) - 1000) % 4


def photo_topic(item_id: str) -> int:
    return int(item_id.split(":")[1]) % 4


def room_interval(item_id: str) -> tuple[datetime, datetime | None]:
    k = int(item_id.split(":")[1]) - 1000
    start = T0 - timedelta(hours=40) + timedelta(hours=k)
    return start, None if k % 3 == 0 else start + timedelta(hours=2)


def _centres(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(4, DIM)) * 3


def unit(v) -> list[float]:
    """`v` scaled to norm 1, as float32: stage 2 writes unit vectors (and rooms must send them)."""
    v = np.asarray(v, dtype=np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


def topic_vector(topic: int, seed: int = 0) -> list[float]:
    """The unit vector of a topic's centre: a room with it comes first for the topic's users."""
    return unit(_centres(seed)[topic])


def write_vectors(ws: Workspace, version: str, seed: int = 0, created: datetime | None = None,
                  users: bool = True) -> None:
    """Append one model version's item (and user) vectors to the stage-2 tables."""
    rng = np.random.default_rng(seed + 100)
    centres = _centres(seed)
    created = created or datetime.now(UTC)
    ids = PHOTOS + ROOMS
    topics = [photo_topic(i) for i in PHOTOS] + [room_topic(i) for i in ROOMS]
    def near(t: int) -> list[float]:
        return unit(centres[t] + rng.normal(size=DIM) * 0.5)

    items = pl.DataFrame({
        "item_id": ids, "domain": ["photo"] * len(PHOTOS) + ["live"] * len(ROOMS),
        "transferable": [near(t) for t in topics],
        "residual": [unit(rng.normal(size=4)) for _ in ids],
        "retrieval": [near(t) for t in topics],
        "model_version": [version] * len(ids),
        "event_timestamp": [T0] * len(ids), "created_timestamp": [created] * len(ids),
    }, schema_overrides={"transferable": pl.List(pl.Float32), "residual": pl.List(pl.Float32),
                         "retrieval": pl.List(pl.Float32), "event_timestamp": pl.Datetime("us", "UTC"),
                         "created_timestamp": pl.Datetime("us", "UTC")})
    _append(ws.feature_data / "item_embeddings.parquet", items)
    if users:
        user_rows = pl.DataFrame({
            "user_id": USERS_WITH_VECTORS,
            "user_vector": [unit(centres[u % 4]) for u in USERS_WITH_VECTORS],
            "model_version": [version] * len(USERS_WITH_VECTORS),
            "event_timestamp": [T0] * len(USERS_WITH_VECTORS),
            "created_timestamp": [created] * len(USERS_WITH_VECTORS),
        }, schema_overrides={"user_id": pl.Int64, "user_vector": pl.List(pl.Float32),
                             "event_timestamp": pl.Datetime("us", "UTC"),
                             "created_timestamp": pl.Datetime("us", "UTC")})
        _append(ws.feature_data / "user_embeddings.parquet", user_rows)


def _append(path: Path, rows: pl.DataFrame) -> None:
    if path.exists():
        rows = pl.concat([pl.read_parquet(path), rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.write_parquet(path)


def write_marts(ws: Workspace) -> None:
    """live_schedule, user_features_daily and user_item_interactions of the tiny world."""
    starts = [room_interval(r)[0] for r in ROOMS]
    ends = [room_interval(r)[1] for r in ROOMS]
    write_mart(ws.marts, "live_schedule", {
        "item_id": ROOMS, "live_id": [int(r.split(":")[1]) for r in ROOMS],
        "author_id": [500 + k % 10 for k in range(len(ROOMS))], "start_timestamp": starts,
        "end_timestamp": ends, "event_timestamp": starts, "created_timestamp": starts})
    write_mart(ws.marts, "user_features_daily", {
        "user_id": USERS, "sv_plays_30d": [10 + u for u in USERS], "is_live_cold_start": [False] * len(USERS),
        "event_timestamp": [T0] * len(USERS), "created_timestamp": [T0] * len(USERS)})
    plays = []
    for u in USERS_WITH_HISTORY:
        mine = [p for p in PHOTOS if photo_topic(p) == u % 4][:5]
        for n, p in enumerate(mine):
            plays.append({"user_id": u, "item_id": p, "domain": "photo", "author_id": 1,
                          "event_timestamp": T0 - timedelta(hours=10 - n), "is_positive": True,
                          "strength": 0.5})
    for j in range(10):  # author 500 + j has j sessions in the week before the cut
        for n in range(j):
            plays.append({"user_id": 1, "item_id": ROOMS[j], "domain": "live", "author_id": 500 + j,
                          "event_timestamp": T0 - timedelta(days=1, minutes=n), "is_positive": True,
                          "strength": 0.5})
    pl.DataFrame(plays, schema_overrides={"event_timestamp": pl.Datetime("us", "UTC")}).write_parquet(
        ws.marts / "user_item_interactions.parquet")


def write_reasoning(ws: Workspace) -> None:
    """Teacher knowledge: photos and rooms of a topic share its vertical and key subject."""
    ids = PHOTOS + [r for r in ROOMS if int(r.split(":")[1]) - 1000 < 36]
    topics = [photo_topic(i) if i.startswith("photo") else room_topic(i) for i in ids]
    write_feature_data(ws.feature_data, "item_reasoning", {
        "item_id": ids, "vertical_domain": [TOPICS[t] for t in topics],
        "key_subject": [SUBJECTS[t] for t in topics], "content_theme": [f"{TOPICS[t]} daily" for t in topics],
        "teacher_id": ["metadata-baseline"] * len(ids), "prompt_version": ["p1"] * len(ids),
        "event_timestamp": [T0 - timedelta(days=5)] * len(ids), "created_timestamp": [T0] * len(ids)})


def write_config(ws: Workspace, settings: Settings, **retrieval: object) -> None:
    """rgcd.yaml for the commands and services the tests start: `retrieval` plus the test's Milvus
    server (URI and database) when it runs against one."""
    import yaml

    r = settings.retrieval
    server = {"milvus_uri": r.milvus_uri, "milvus_db": r.milvus_db} if r.milvus_uri else {}
    section = {**server, **retrieval}
    (ws.root / "rgcd.yaml").write_text(yaml.safe_dump({"retrieval": section}))


def build(root: Path, settings: Settings, version: str = "v1") -> Workspace:
    """The whole tiny world with Feast applied and materialized, stage 2's `version` written."""
    from rgcd.featurestore import store as fs

    ws = Workspace(root).ensure()
    write_marts(ws)
    write_reasoning(ws)
    write_vectors(ws, version)
    fs.apply(ws, settings)
    fs.materialize(fs.feature_store(ws, settings))
    return ws


# The write token tests start `rgcd serve` with (its variable is serving.write_token_env's default).
TOKEN = "test-write-token-0123456789"


def call(port: int, method: str, path: str, body: object | None = None,
         token: str | None = TOKEN) -> tuple[int, dict]:
    """One HTTP request to the service on 127.0.0.1 (with the bearer token): (status, JSON body)."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def start_service(ws: Workspace, port: int, *args: str, token: str | None = TOKEN):
    """`rgcd serve` on 127.0.0.1:port as its own process (write token `token`), once /health answers
    200 (its Popen)."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "rgcd.cli", "-w", str(ws.root), "serve", "--port", str(port), *args]
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**{k: v for k, v in os.environ.items() if k != "RGCD_WRITE_TOKEN"},
                                 "PYTHONPATH": str(root), **({"RGCD_WRITE_TOKEN": token} if token else {})})
    wait_until_healthy(proc, f"http://127.0.0.1:{port}", 120)
    return proc


class Load:
    """`clients` threads sending GET requests to the service on 127.0.0.1 until stopped (at most
    `max_requests` each), recording (start time, seconds, status, model version) per request.

    Without `rate` each client sends its next request when the last answer arrives (closed loop: the
    service runs at its limit). With `rate` (requests per second, all clients together) each client
    sends on a fixed schedule, the clients staggered; a request's time counts from its scheduled
    start, so an answer that holds a client up is charged to the requests it delays (no coordinated
    omission)."""

    def __init__(self, port: int, paths: list[str], clients: int, max_requests: int = 5_000,
                 rate: float | None = None) -> None:
        import threading

        self.port, self.paths, self.max_requests, self.rate = port, paths, max_requests, rate
        self.clients = clients
        self.stop = threading.Event()
        self.records: list[tuple[float, float, int, str]] = []
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]

    def _client(self, n: int) -> None:
        import http.client
        import json
        import time

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        start = time.monotonic()
        for i in range(self.max_requests):
            if self.stop.is_set():
                break
            path = self.paths[(n * 7 + i) % len(self.paths)]
            if self.rate:
                t0 = start + (i * self.clients + n) / self.rate  # this client's i-th slot
                time.sleep(max(0.0, t0 - time.monotonic()))
            else:
                t0 = time.monotonic()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                version = json.loads(body).get("model_version", "") if resp.status == 200 else body.decode()
                status = resp.status
            except (OSError, http.client.HTTPException, ValueError) as err:
                status, version = 0, repr(err)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.records.append((t0, time.monotonic() - t0, status, version))
        conn.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)
