"""A tiny stage-2 world built in code: the stage-1 marts plus what stage 1 and dbt would add.

Chorus states are written directly (no student): per vertical a centroid shared by both domains
(what transfers), per domain an offset (what does not), plus noise. The teacher's pair judgement
follows the metadata baseline's rule (same vertical: 0.9, else 0.1). Interactions: users who
play short videos and enter rooms of one favourite vertical.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import torch
from safetensors.torch import save_file
from stage1_world import write_world

from rgcd.config import Workspace

STUDENT_VERSION = "student-synthetic"


def write_chorus_states(ws: Workspace, items: pl.DataFrame, dim: int = 32, n_chorus: int = 16,
                        seed: int = 0, noise: float = 0.6) -> None:
    rng = np.random.default_rng(seed)
    verticals = sorted(items["category_l1"].unique().to_list())
    centre = {v: rng.normal(size=(n_chorus, dim)) for v in verticals}
    offset = {d: 1.5 * rng.normal(size=(n_chorus, dim)) for d in ("photo", "live")}
    states = np.stack([centre[v] + offset[d] + noise * rng.normal(size=(n_chorus, dim))
                       for v, d in zip(items["category_l1"], items["domain"], strict=True)])
    states = states.astype(np.float32)
    out = ws.student
    out.mkdir(parents=True, exist_ok=True)
    save_file({"chorus_states": torch.from_numpy(states)}, out / "chorus_states.safetensors",
              metadata={"model_version": STUDENT_VERSION, "n_chorus": str(n_chorus)})
    pl.DataFrame({"row": np.arange(items.height, dtype=np.int64), "item_id": items["item_id"],
                  "domain": items["domain"], "model_version": [STUDENT_VERSION] * items.height}
                 ).write_parquet(out / "chorus_index.parquet")


def write_pair_reasoning(ws: Workspace, pairs: pl.DataFrame, items: pl.DataFrame) -> None:
    cat = dict(zip(items["item_id"], items["category_l1"], strict=True))
    rooms = pairs.filter(pl.col("target_id").str.starts_with("live:"))
    same = [cat[p] == cat[t] for p, t in zip(rooms["photo_item_id"], rooms["target_id"], strict=True)]
    ms = pl.Datetime("ms", "UTC")
    pl.DataFrame({
        "pair_id": rooms["pair_id"], "photo_item_id": rooms["photo_item_id"], "target_id": rooms["target_id"],
        "match": same, "reason": ["same vertical" if s else "different verticals" for s in same],
        "semantic_transferability": [0.9 if s else 0.1 for s in same],
        "teacher_id": ["metadata-baseline (not an LLM)"] * rooms.height,
        "prompt_version": ["pair-v1"] * rooms.height,
        "event_timestamp": rooms["last_seen"].cast(ms),
        "created_timestamp": [datetime.now(UTC)] * rooms.height,
    }, schema_overrides={"created_timestamp": ms}).write_parquet(ws.feature_data / "pair_reasoning.parquet")


def write_interactions(ws: Workspace, items: pl.DataFrame, users: int = 40, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    verticals = sorted(items["category_l1"].unique().to_list())
    t0 = items["event_timestamp"].min()
    rows = []
    for u in range(users):
        fav = verticals[u % len(verticals)]
        for domain, n in (("photo", 12), ("live", 3 if u % 4 else 0)):  # every 4th user: live cold start
            pool = items.filter((pl.col("domain") == domain) & (pl.col("category_l1") == fav))["item_id"]
            for _ in range(n):
                rows.append({"user_id": u, "item_id": pool[int(rng.integers(len(pool)))], "domain": domain,
                             "event_timestamp": t0 + timedelta(hours=int(rng.integers(1, 200))),
                             "is_positive": True})
    pl.DataFrame(rows).write_parquet(ws.marts / "user_item_interactions.parquet")


def systematic_pairs(items: pl.DataFrame, n: int, mismatch: float, seed: int = 0) -> pl.DataFrame:
    """Room pairs: mostly same vertical; a `mismatch` share links a vertical's short videos to the
    NEXT vertical's rooms, a behaviour habit the teacher judges not transferable."""
    rng = np.random.default_rng(seed)
    verticals = sorted(items["category_l1"].unique().to_list())
    photos = items.filter(pl.col("domain") == "photo").to_dicts()
    rooms = {v: items.filter((pl.col("domain") == "live") & (pl.col("category_l1") == v)).to_dicts()
             for v in verticals}
    t0 = items["event_timestamp"].min()
    rows = []
    for _ in range(n):
        photo = photos[int(rng.integers(len(photos)))]
        v = verticals.index(photo["category_l1"])
        shift = 1 if rng.random() < mismatch else 0
        pool = rooms[verticals[(v + shift) % len(verticals)]]
        live = pool[int(rng.integers(len(pool)))]
        seen = t0 + timedelta(days=int(rng.integers(1, 10)))
        co = int(rng.integers(1, 40))
        rows.append({"pair_id": f"{photo['item_id']}|{live['item_id']}", "pair_type": "photo_live_room",
                     "photo_item_id": photo["item_id"], "target_id": live["item_id"],
                     "photo_id": photo["source_id"], "live_id": live["source_id"],
                     "author_id": live["author_id"], "co_count": co, "distinct_users": max(1, co // 2),
                     "strength": float(rng.uniform(0.05, 1)),
                     "first_seen": seen - timedelta(days=1), "last_seen": seen, "event_timestamp": seen,
                     "created_timestamp": seen + timedelta(hours=1)})
    return pl.DataFrame(rows, schema_overrides={"live_id": pl.Int64}).unique("pair_id", keep="first",
                                                                             maintain_order=True)


def build(ws: Workspace, pairs: int = 1500, mismatch: float = 0.3,
          **world) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Marts, chorus states, pair reasoning and interactions of a small stage-2 world."""
    items, _ = write_world(ws.marts, **world)
    pairs = systematic_pairs(items, pairs, mismatch)
    pairs.write_parquet(ws.marts / "behaviour_pairs.parquet")
    ws.feature_data.mkdir(parents=True, exist_ok=True)
    write_chorus_states(ws, items)
    write_pair_reasoning(ws, pairs, items)
    write_interactions(ws, items)
    return items, pairs
