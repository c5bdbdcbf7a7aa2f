"""Claim: how much of the oracle's live-room score a model could owe to knowing topics at all.

RGCD-Rep's premise is that what a user's short videos say about their topics carries over to live
rooms. On a demo workspace after `rgcd run` (it needs the latent truth, `<ws>/latent/`), this scores
the live-room protocol's test cases with the generator's own rule (`training/oracle.py`) three ways:

- `oracle`: the rule as it drew the sessions (each user's true live interest);
- `oracle-transfer`: the same rule, each user's live interest replaced by what their short-video
  interest gives through the world's topic-transfer matrix (`latent/params.json: transfer`) — the
  most any cross-domain topic model could know (the user's own live taste is unknowable from short
  videos);
- `oracle-no-interest`: the same rule with every topic equally likely — routes, room popularity
  weights and creator links, no topic knowledge at all;

beside the popularity and creator-link rules, on the same cases (one seed: nothing here is fitted).
The difference `oracle-transfer` − `oracle-no-interest` is the headroom topic transfer has on this
world; the method's goal (+20% HR@10 on cold-start over the strongest baseline) is read against it.

    python benchmarks/topic_headroom.py WS      # -> benchmarks/results/topic_headroom.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results_format import write_result  # noqa: E402

from rgcd.config import Workspace  # noqa: E402
from rgcd.training.evaluation import run_evaluation  # noqa: E402
from rgcd.training.oracle import Oracle  # noqa: E402
from rgcd.transforms.latent import LatentTruth, load_latent  # noqa: E402

RULES = ("popularity", "creator_link_popularity")
SLICES = ("all", "cold_start", "cold_start_not_linked", "not_linked")
METRICS = ("NDCG@10", "HR@10")


def with_interest(truth: LatentTruth, interest: np.ndarray) -> LatentTruth:
    """The truth with every user's live interest replaced (rows of `interest` follow `truth.users`)."""
    column = pl.Series(interest.astype(np.float32)).cast(pl.List(pl.Float32))
    return dataclasses.replace(truth, users=truth.users.with_columns(interests=column))


def interests_from_short_videos(truth: LatentTruth) -> np.ndarray:
    """Each user's short-video topic mixture through the world's transfer matrix, normalised."""
    transfer = np.asarray(truth.params["transfer"], dtype=np.float64)
    photo = np.stack(truth.users["photo_interests"].to_numpy()).astype(np.float64)
    via = photo @ transfer
    return via / via.sum(axis=1, keepdims=True)


def measure(ws: Workspace) -> dict:
    truth = load_latent(ws)
    if truth is None:
        raise SystemExit(f"{ws.root} has no latent truth (latent/): run it on a demo world")
    via = interests_from_short_videos(truth)
    uniform = np.full_like(via, 1.0 / via.shape[1])
    extra = {"oracle-transfer": lambda: Oracle(with_interest(truth, via)),
             "oracle-no-interest": lambda: Oracle(with_interest(truth, uniform))}
    settings = ws.settings()
    cfg = settings.evaluation.model_copy(update={"protocols": ["live-room"], "workers": 1})
    out, doc = run_evaluation(ws, cfg, seeds=[0], run="topic-headroom", models=list(RULES), extra=extra,
                              progress=False, settings=settings)
    live = doc["protocols"]["live-room"]
    models = [*RULES, "oracle-no-interest", "oracle-transfer", "oracle"]
    return {"report": str(out.relative_to(ws.root)),
            "scores": {m: {s: {k: round(live[m][s][k], 4) for k in METRICS} for s in SLICES} for m in models}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "topic_headroom.json")
    args = ap.parse_args()
    figures = measure(Workspace(args.workspace))
    sc = figures["scores"]

    def gain(slice_: str, metric: str) -> float:
        return sc["oracle-transfer"][slice_][metric] / sc["oracle-no-interest"][slice_][metric] - 1

    figures["topic_gain"] = {s: {k: round(gain(s, k), 4) for k in METRICS} for s in SLICES}
    cold = "cold_start"
    doc = write_result(
        args.out,
        claim=("how much of the generator's own live-room score comes from knowing each user's topics "
               "through their short videos (oracle-transfer) rather than from routes, room popularity "
               "and creator links alone (oracle-no-interest)"),
        figures=figures,
        headline=(f"cold-start HR@10: oracle-no-interest {sc['oracle-no-interest'][cold]['HR@10']:.4f}, "
                  f"oracle-transfer {sc['oracle-transfer'][cold]['HR@10']:.4f} "
                  f"({gain(cold, 'HR@10'):+.0%}), oracle {sc['oracle'][cold]['HR@10']:.4f}; "
                  f"creator_link_popularity {sc['creator_link_popularity'][cold]['HR@10']:.4f}"),
        peer=f"oracle-no-interest, cold-start HR@10 {sc['oracle-no-interest'][cold]['HR@10']:.4f}",
        ratio=round(1 + gain(cold, "HR@10"), 3))
    print(json.dumps(doc["figures"], indent=2))


if __name__ == "__main__":
    main()
