"""The serving world of serving_world.py, plus what the explorer shows beside the candidates: titles and
categories (the item_content mart), a test-period request per user (eval_live_room), a live session
entered after the cut, and an evaluation report written by the real report writer (training/report.py)
from hand-made per-case values of two models (seeded: the numbers are made up, their shape is the
report's own)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import serving_world as w
from feast_marts import write_mart

from rgcd.config import Settings, Workspace

ENTERED_AT = w.T0 + timedelta(minutes=20)  # user 1 enters a room on air at the cut, 20 minutes later


def write_catalogue(ws: Workspace) -> None:
    """item_content: a title and a category per photo and room, by topic."""
    ids = w.PHOTOS + w.ROOMS
    topics = [w.photo_topic(i) if i.startswith("photo") else w.room_topic(i) for i in ids]
    write_mart(ws.marts, "item_content", {
        "item_id": ids, "domain": ["photo" if i.startswith("photo") else "live" for i in ids],
        "author_id": [1 if i.startswith("photo") else 500 + (int(i[5:]) - 1000) % 10 for i in ids],
        "title": [f"{w.SUBJECTS[t]} #{i.split(':')[1]}" for i, t in zip(ids, topics, strict=True)],
        "category_l1": [w.TOPICS[t] for t in topics], "category_l2": [f"{w.TOPICS[t]} daily" for t in topics],
        "event_timestamp": [w.T0 - timedelta(days=5)] * len(ids),
        "created_timestamp": [w.T0 - timedelta(days=5)] * len(ids)})


def write_test_requests(ws: Workspace) -> None:
    """eval_live_room's test split: user 1 (live history) and user 17 (none) at the cut; user 1 also
    enters live:1006 (on air at the cut) at ENTERED_AT."""
    pl.DataFrame({"user_id": [1, 17], "live_id": [1006, 1003], "item_id": ["live:1006", "live:1003"],
                  "request_timestamp": [w.T0, w.T0], "split": ["test", "test"],
                  "is_cold_start_user": [False, True]},
                 schema_overrides={"request_timestamp": pl.Datetime("us", "UTC")}).write_parquet(
        ws.marts / "eval_live_room.parquet")
    path = ws.marts / "user_item_interactions.parquet"
    entered = pl.DataFrame([{"user_id": 1, "item_id": "live:1006", "domain": "live", "author_id": 506,
                             "event_timestamp": ENTERED_AT, "is_positive": True, "strength": 0.5}],
                           schema_overrides={"event_timestamp": pl.Datetime("us", "UTC")})
    pl.concat([pl.read_parquet(path), entered]).write_parquet(path)


def write_report(ws: Workspace) -> Path:
    """An evaluation report of two models on both protocols, written by training/report.py."""
    from rgcd.training.report import write_report as write
    from rgcd.training.results import PER_CASE_METRICS, SLICES, EvaluationResult, ModelRun

    rng = np.random.default_rng(27)
    runs = []
    cases = {"klm3-cdr": 40, "live-room": 30}
    for protocol, n in cases.items():
        for model, level in (("popularity", 0.2), ("full", 0.35)):
            for seed in (0, 1):
                per_case, metrics = {}, {}
                for s in SLICES[:3]:
                    values = {m: (rng.random(n) < level).astype(float) * rng.random(n)
                              for m in PER_CASE_METRICS}
                    per_case[s] = values
                    metrics[s] = {**{m: float(v.mean()) for m, v in values.items()},
                                  "HR@50": float(min(1.0, values["HR@10"].mean() * 1.5)),
                                  "NDCG@50": float(values["NDCG@10"].mean() * 1.1)}
                runs.append(ModelRun(protocol, model, seed, metrics, {s: n for s in SLICES[:3]}, 0.1, 0.1,
                                     per_case))
    result = EvaluationResult(run="explorer-test", seeds=[0, 1], ks=[10, 50], runs=runs,
                              baselines={"popularity"},
                              cases={p: {s: n for s in SLICES[:3]} for p, n in cases.items()},
                              bootstrap_samples=200)
    return write(result, ws.reports)


def build(root: Path, settings: Settings) -> Workspace:
    """The serving world, published, with the catalogue, test requests and a report."""
    from rgcd.embeddings.publish import publish

    ws = w.build(root, settings)
    write_catalogue(ws)
    write_test_requests(ws)
    publish(ws, settings)
    write_report(ws)
    return ws
