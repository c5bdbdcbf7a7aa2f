"""The same commit and configuration give the same numbers whatever the machine's thread and worker
counts: two runs of distill, transfer and evaluate on one tiny demo world, one with one OMP/MKL
thread, one encoding process and one evaluation process, the other with three threads, two encoding
processes and two evaluation workers, give bit-identical chorus states, stage-2 vectors, per-case
values and metrics for every model, the full method and its ablations included.

Torch's intra-op threads are pinned by the configuration (student.torch_threads, transfer's and
evaluation's torch_threads), encoding runs one thread per process, and every fit is seeded by its
own seed, so nothing read from the machine or the environment reaches a number."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

# The smallest world that runs every stage: few users and rooms (the platform's floor of rooms a day
# lowered from 3,000), short trainings. What the two runs share is this configuration.
TINY = {
    "demo": {"users": 300, "days": 6, "seed": 3, "density": {"min_rooms_per_day": 300}},
    "student": {"steps": 20, "max_train_items": 200, "eval_items": 20},
    "transfer": {"steps": 30, "batch_size": 128, "eval_every": 10, "checkpoint_every": 10},
    "evaluation": {"seeds": [0], "mf_samples": 2**13, "contrastive_samples": 2**13, "text_max_items": 80},
}
# How the runs differ: only how the work is spread over the machine, never what is computed.
SPREAD = {
    "narrow": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
               {"student": {"encode_processes": 1}, "evaluation": {"workers": 1}}),
    "wide": ({"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"},
             {"student": {"encode_processes": 2}, "evaluation": {"workers": 2, "parallel_from_cases": 0}}),
}
LEARNED = "distill,transfer,evaluate"


def _merged(base: dict, extra: dict) -> dict:
    out = json.loads(json.dumps(base))
    for section, values in extra.items():
        out.setdefault(section, {}).update(values)
    return out


def _rgcd(ws: Path, config: Path, stages: str, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "rgcd.cli", "--workspace", str(ws), "--config", str(config),
                           "run", "--stages", stages], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _learned_outputs(ws: Path) -> dict[str, object]:
    """What the learned stages wrote: the chorus states, every stage-2 fit's vectors (the transfer
    stage's and the evaluation's, by fingerprint), each report's per-case values and metrics."""
    from safetensors.numpy import load_file

    states = (ws / "models/student/chorus_states.safetensors").read_bytes()
    out: dict[str, object] = {"chorus_states": hashlib.sha256(states).hexdigest()}
    for fit in sorted((ws / "models/transfer/fits").iterdir()):
        for name, array in load_file(fit / "vectors.safetensors").items():
            out[f"fit {fit.name} {name}"] = array
    reports = [p.parent for p in (ws / "reports").glob("*/metrics.json")]
    assert len(reports) == 1, reports
    with np.load(reports[0] / "per_case.npz") as cases:
        out.update({f"case {k}": cases[k] for k in cases.files})
    metrics = json.loads((reports[0] / "metrics.json").read_text())
    out.update(per_seed=metrics["per_seed"], protocols=metrics["protocols"], intervals=metrics["intervals"])
    return out


def _forget_learned(ws: Path) -> None:
    """Remove what the learned stages wrote, so the next run fits everything again."""
    import shutil

    for folder in ("models/student", "models/transfer", "reports"):
        shutil.rmtree(ws / folder, ignore_errors=True)


@pytest.mark.slow
def test_thread_and_worker_counts_change_no_number(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rgcd.yaml").write_text(yaml.safe_dump(TINY))
    _rgcd(ws, ws / "rgcd.yaml", "demo-data,ingest,build,features,reason", {})
    runs = {}
    for name, (env, knobs) in SPREAD.items():
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(_merged(TINY, knobs)))
        _forget_learned(ws)
        _rgcd(ws, config, LEARNED, env)
        runs[name] = _learned_outputs(ws)
    narrow, wide = runs["narrow"], runs["wide"]
    assert narrow.keys() == wide.keys()
    assert any(k.startswith("fit ") for k in narrow) and any("|rgcd|" in k for k in narrow)
    models = set(narrow["protocols"]["live-room"])
    assert {"rgcd", "rgcd-no-routing", "uniembed", "bpr_mf", "emcdr", "content_text"} <= models
    for key, value in narrow.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == wide[key].dtype and np.array_equal(value, wide[key]), key
        else:
            assert value == wide[key], key
