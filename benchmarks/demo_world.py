"""Claim: the demo world looks like a platform and its behaviour pairs carry noise, measured.

Reads a workspace built from the demo world (`rgcd run`, or demo-data + ingest + build) and its
latent truth (`<ws>/latent/`), and reports:

- rooms on air at the live-room test requests, exactly as the protocol ranks them
  (`eval_live_room` test rows, `live_schedule`: start <= t < coalesce(end, +inf));
- how often a room gets no session from the sampled users, and how concentrated sessions are;
- the share of behaviour pairs whose two items share a latent topic, by strength band and pair
  type, next to the share two random items would have (topics drawn independently).

    python benchmarks/demo_world.py WS      # -> benchmarks/results/demo_world.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rgcd.config import Workspace  # noqa: E402
from rgcd.transforms.latent import load_latent  # noqa: E402

BANDS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 1.01)


def on_air_at_requests(ws: Workspace) -> dict:
    """Percentiles of the rooms on air at each live-room test request (the protocol's candidates)."""
    ev = pl.read_parquet(ws.marts / "eval_live_room.parquet").filter(pl.col("split") == "test")
    t = ev.select("user_id", "request_timestamp").unique()["request_timestamp"].dt.epoch("ms").to_numpy()
    sched = pl.read_parquet(ws.marts / "live_schedule.parquet")
    start = np.sort(sched["start_timestamp"].dt.epoch("ms").to_numpy())
    end = np.sort(sched["end_timestamp"].dt.epoch("ms").fill_null(np.iinfo(np.int64).max).to_numpy())
    n = np.searchsorted(start, t, side="right") - np.searchsorted(end, t, side="right")
    hours = (t // 3_600_000) % 24
    return {"requests": int(len(t)), **{f"p{q}": float(np.percentile(n, q)) for q in (10, 50, 90)},
            "min": int(n.min()), "max": int(n.max()),
            "share_of_requests_18_to_23_utc": float(((hours >= 18) & (hours <= 23)).mean())}


def room_reach(ws: Workspace) -> dict:
    """Rooms without any session, and the share of sessions the top 1% of streamers get."""
    sched = pl.read_parquet(ws.marts / "live_schedule.parquet")
    inter = pl.read_parquet(ws.marts / "user_item_interactions.parquet").filter(pl.col("domain") == "live")
    visited = inter["item_id"].unique()
    per_author = inter.join(sched.select("item_id", "author_id"), on="item_id").group_by("author_id").len()
    counts = np.sort(per_author["len"].to_numpy())[::-1]
    top = max(1, int(np.ceil(0.01 * sched["author_id"].n_unique())))
    return {"rooms": sched.height, "rooms_without_session": float(1 - visited.len() / sched.height),
            "streamers": int(sched["author_id"].n_unique()),
            "sessions_to_top_1pct_streamers": float(counts[:top].sum() / counts.sum())}


def pair_noise(ws: Workspace) -> dict:
    """Share of pairs whose two items share a latent topic, per strength band and pair type."""
    truth = load_latent(ws)
    if truth is None:
        raise SystemExit(f"{ws.root} has no latent/ folder: this needs a demo world "
                         "(rgcd run without --data)")
    items = truth.items.select("item_id", "topic", "author_id", "domain")
    author_topic = (items.filter(pl.col("domain") == "live").group_by("author_id", "topic").len()
                    .sort(["author_id", "len", "topic"], descending=[False, True, False])
                    .group_by("author_id", maintain_order=True).first()
                    .select(pl.format("author:{}", "author_id").alias("item_id"), "topic"))
    topics = pl.concat([items.select("item_id", "topic"), author_topic])
    pairs = (pl.read_parquet(ws.marts / "behaviour_pairs.parquet",
                             columns=["pair_type", "photo_item_id", "target_id", "strength", "co_count"])
             .join(topics.rename({"item_id": "photo_item_id", "topic": "photo_topic"}), on="photo_item_id")
             .join(topics.rename({"item_id": "target_id", "topic": "target_topic"}), on="target_id")
             .with_columns(same=pl.col("photo_topic") == pl.col("target_topic"),
                           band=pl.col("strength").cut(list(BANDS[1:-1]), left_closed=True)))
    out: dict = {"pairs": pairs.height, "by_type": {}}
    for kind, frame in pairs.group_by("pair_type"):
        p = frame["photo_topic"].value_counts(normalize=True).rename({"photo_topic": "t",
                                                                      "proportion": "a"})
        q = frame["target_topic"].value_counts(normalize=True).rename({"target_topic": "t",
                                                                       "proportion": "b"})
        chance = float(p.join(q, on="t").select((pl.col("a") * pl.col("b")).sum()).item())
        bands = (frame.group_by("band")
                 .agg(pl.len().alias("pairs"), pl.col("same").mean().alias("same_topic")).sort("band"))
        repeated = frame.filter(pl.col("co_count") >= 2)
        out["by_type"][kind[0]] = {
            "pairs": frame.height, "same_topic": float(frame["same"].mean()), "chance": chance,
            "same_topic_co_count_ge_2": float(repeated["same"].mean()) if repeated.height else None,
            "bands": [{"strength": str(b), "pairs": int(n), "same_topic": float(s)}
                      for b, n, s in bands.iter_rows()]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo_world.json")
    args = ap.parse_args()
    ws = Workspace(args.workspace)
    doc = {"created": datetime.now().astimezone().isoformat(timespec="seconds"), "workspace": str(ws.root),
           "on_air_at_test_requests": on_air_at_requests(ws), "rooms": room_reach(ws),
           "pair_noise": pair_noise(ws)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
