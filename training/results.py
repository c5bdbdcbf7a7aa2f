"""What an evaluation produces: one run per (protocol, model, seed), and the whole result to report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PROTOCOLS = ("klm3-cdr", "live-room")



SLICES = ("all", "cold_start", "tail")



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

    def protocols(self) -> list[str]:
        return list(dict.fromkeys(r.protocol for r in self.runs))

    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.runs))
