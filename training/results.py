"""What an evaluation produces: one run per (protocol, model, seed), and the whole result to report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PROTOCOLS = ("klm3-cdr", "live-room")
# The slices every protocol reports (training/evaluation.py says what each holds).
SLICES = ("all", "cold_start", "tail", "not_linked", "cold_start_not_linked", "new_streamer", "off_topic")
# Per-positive flags an EvalSet carries (the tail flag is per candidate: `EvalSet.tail_item`).
POSITIVE_FLAGS = ("not_linked", "new_streamer", "off_topic")
# The per-case values kept for paired intervals (training/intervals.py, training/report.py).
PER_CASE_METRICS = ("NDCG@10", "HR@10")


@dataclass
class ModelRun:
    """One model fitted and evaluated on one protocol with one seed."""

    protocol: str
    model: str
    seed: int
    metrics: dict[str, dict[str, float]]
    counts: dict[str, int]
    fit_s: float
    eval_s: float
    # slice -> metric -> per-case values (PER_CASE_METRICS), for the paired intervals
    per_case: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # the same model's means on the protocol's validation cases ({} where it has none)
    valid_metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    """Everything one `rgcd evaluate` produced, before it is written."""

    run: str
    seeds: list[int]
    ks: list[int]
    runs: list[ModelRun]
    baselines: set[str]
    cases: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: dict[str, dict[str, int]] = field(default_factory=dict)
    item_vectors: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    bootstrap_samples: int = 1000  # resamples behind the report's paired intervals

    def protocols(self) -> list[str]:
        return list(dict.fromkeys(r.protocol for r in self.runs))

    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.runs))
