"""Claim: how much of an item's latent topic each representation carries (why rgcd meets uniembed).

On a demo workspace after `rgcd run` (it needs the latent truth, `<ws>/latent/`): for samples of
videos and rooms, the share of each item's 10 nearest neighbours (cosine) that have its latent
topic, within a domain and from videos to rooms, for the dataset's raw multimodal vectors (what
uniembed and content_mm read) and the stage-2 transferable and residual vectors (what the full
method's retriever reads). Chance (the share two random items share a topic) is the floor.

    python benchmarks/topic_purity.py WS      # -> benchmarks/results/topic_purity.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rgcd.config import Workspace  # noqa: E402
from rgcd.transforms.latent import load_latent  # noqa: E402

COLUMNS = ("mm_embedding", "transferable", "residual")


def _unit(frame: pl.DataFrame, col: str) -> np.ndarray:
    m = np.asarray(frame[col].to_list(), dtype=np.float32)
    return m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-9)


def neighbour_topic_share(query: np.ndarray, q_topic: np.ndarray, keys: np.ndarray, k_topic: np.ndarray,
                          n: int = 10) -> float:
    """Mean share of each query's n nearest keys (cosine) that have the query's topic."""
    nearest = np.argpartition(-(query @ keys.T), n, axis=1)[:, :n]
    return float((k_topic[nearest] == q_topic[:, None]).mean())


def chance(q_topic: np.ndarray, k_topic: np.ndarray) -> float:
    share = pl.Series(k_topic).value_counts(normalize=True)
    lookup = dict(zip(share[:, 0].to_list(), share[:, 1].to_list(), strict=True))
    return float(np.mean([lookup.get(t, 0.0) for t in q_topic]))


def measure(ws: Workspace, sample: int, seed: int) -> dict:
    truth = load_latent(ws)
    if truth is None:
        raise SystemExit(f"{ws.root} has no latent truth (latent/): run it on a demo world")
    items = (pl.read_parquet(ws.feature_data / "item_embeddings.parquet")
             .select("item_id", "domain", "transferable", "residual", "model_version")
             .join(truth.items.select("item_id", "topic"), on="item_id")
             .join(pl.read_parquet(ws.marts / "item_content.parquet").select("item_id", "mm_embedding"),
                   on="item_id"))
    rng = np.random.default_rng(seed)
    picked = {}
    for domain in ("photo", "live"):
        d = items.filter(pl.col("domain") == domain)
        picked[domain] = d[rng.choice(d.height, min(2 * sample, d.height), replace=False)]
    out: dict = {"model_version": items["model_version"][0], "sample": sample, "neighbours": 10}
    for domain, d in picked.items():
        half = d.height // 2
        t = d["topic"].to_numpy()
        out[domain] = {col: neighbour_topic_share(_unit(d[:half], col), t[:half],
                                                  _unit(d[half:], col), t[half:]) for col in COLUMNS}
        out[domain]["chance"] = chance(t[:half], t[half:])
    photo, live = picked["photo"], picked["live"]
    out["photo_to_live"] = {
        col: neighbour_topic_share(_unit(photo, col), photo["topic"].to_numpy(), _unit(live, col),
                                   live["topic"].to_numpy()) for col in ("transferable",)}
    out["photo_to_live"]["chance"] = chance(photo["topic"].to_numpy(), live["topic"].to_numpy())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--sample", type=int, default=1500, help="items per half, per domain")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "topic_purity.json")
    args = ap.parse_args()
    result = measure(Workspace(args.workspace), args.sample, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
