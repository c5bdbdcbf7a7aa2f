"""The fault matrix: every stage that writes is SIGKILLed at several points (rgcd.faults kill
points, in a real subprocess), rerun, and compared with a run that was never killed: same
results, no duplicates, nothing lost, no manual step.

Table-driven: a stage is one row of MATRIX: its kill points and the signature of its output
that must equal the uninterrupted run's. Stages run in order on one workspace; the reference
workspace runs each stage once, uninterrupted, in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from rgcd.config import Workspace
from rgcd.pipeline import STAGES
from rgcd.transforms.demo import generate

SETTINGS = {"student": {"tiny_hidden": 32, "tiny_heads": 2, "tiny_vocab": 500, "steps": 30,
                        "batch_size": 16, "eval_items": 10, "checkpoint_every_steps": 10}}

_VOLATILE = {"ingested_at", "created_timestamp"}  # wall-clock stamps of when a row was written


def _frame(path: Path) -> pl.DataFrame:
    frame = pl.read_parquet(path, hive_partitioning=False)
    frame = frame.drop([c for c in frame.columns if c in _VOLATILE])
    unsortable = pl.List | pl.Array | pl.Float32 | pl.Float64
    keys = [c for c, t in frame.schema.items() if not isinstance(t, unsortable)]
    return frame.sort(keys) if keys else frame


def _tables(folder: Path) -> dict[str, pl.DataFrame]:
    """Every parquet table under `folder` (a partitioned table as one frame)."""
    tables: dict[str, list[Path]] = {}
    for p in sorted(folder.rglob("*.parquet")):
        rel = p.relative_to(folder)
        tables.setdefault(rel.parts[0] if len(rel.parts) > 1 else rel.stem, []).append(p)
    return {name: pl.concat([_frame(p) for p in paths], how="diagonal_relaxed")
            for name, paths in tables.items()}


def _online(ws: Workspace) -> pl.DataFrame:
    from rgcd.featurestore import store as fs

    store = fs.feature_store(ws, ws.settings())
    users = pl.read_parquet(ws.marts / "user_features_daily.parquet")["user_id"].unique().sort().head(50)
    items = pl.read_parquet(ws.marts / "item_content.parquet")["item_id"].unique().sort().head(50)
    return fs.online_features(store, "ranker", {"user_id": users.to_list(), "item_id": items.to_list()})


def _distilled(ws: Workspace) -> dict:
    from safetensors.torch import load_file

    student = ws.models / "student"
    return {"states": load_file(student / "chorus_states.safetensors")["chorus_states"],
            **load_file(student / "model" / "model.safetensors"),
            "index": _frame(student / "chorus_index.parquet")}


def _lake(ws: Workspace) -> dict:
    return {**_tables(ws.lake), **{f"quarantine/{k}": v for k, v in _tables(ws.quarantine).items()}}


# stage -> (kill points, each a separate kill and rerun: `<point>@<n>` is the n-th pass; signature)
MATRIX = {
    "ingest": (["ingest.file_staged@3", "ingest.journal_written", "ingest.rename@4"], _lake),
    "build": (["build.before_switch"], lambda ws: _tables(ws.marts)),
    "features": (["features.after_apply"], lambda ws: {"online": _online(ws)}),
    "reason": (["reason.batch_cached", "reason.between_tables"], lambda ws: _tables(ws.feature_data)),
    "distill": (["distill.train_step@15", "distill.encode_shard", "distill.between_index_and_states"],
                _distilled),
}


def _same(a: dict, b: dict, stage: str) -> None:
    import torch

    assert a.keys() == b.keys(), stage
    for key in a:
        if isinstance(a[key], pl.DataFrame):
            assert a[key].height == b[key].height, (stage, key)  # no duplicates, nothing lost
            assert_frame_equal(a[key], b[key], check_exact=False, rel_tol=1e-9), (stage, key)
        else:
            assert torch.equal(a[key], b[key]), (stage, key)


_RUN_STAGE = """
import sys
from pathlib import Path
from rgcd.config import Workspace
from rgcd.pipeline import STAGES
ws = Workspace(sys.argv[1])
stage = {s.name: s for s in STAGES}[sys.argv[2]]
print(stage.run(ws, ws.settings(), Path(sys.argv[3])))
"""


def _killed(ws: Workspace, stage: str, data: Path, point: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RGCD_KILL_AT": point}
    return subprocess.run([sys.executable, "-c", _RUN_STAGE, str(ws.root), stage, str(data)], env=env,
                          capture_output=True, text=True, timeout=600)


def _workspace(root: Path) -> Workspace:
    ws = Workspace(root).ensure()
    ws.config_file.write_text(yaml.safe_dump(SETTINGS))
    return ws


@pytest.mark.slow
def test_every_writing_stage_survives_kill_9_at_every_point(tmp_path):
    data = tmp_path / "world"
    generate(data, users=150, days=4, seed=11, show_progress=False)
    reference, faulted = _workspace(tmp_path / "reference"), _workspace(tmp_path / "faulted")
    by_name = {s.name: s for s in STAGES}
    survived = []
    for stage, (points, signature) in MATRIX.items():
        run = by_name[stage].run
        assert run is not None, f"{stage} is in the fault matrix but not built"
        line = run(reference, reference.settings(), data)
        assert not line.startswith("skipped"), (stage, line)
        for point in points:
            killed = _killed(faulted, stage, data, point)
            assert killed.returncode == -signal.SIGKILL, (stage, point, killed.stderr[-2000:])
        rerun = run(faulted, faulted.settings(), data)  # no manual step between the kill and this
        assert not rerun.startswith("skipped"), (stage, rerun)
        _same(signature(reference), signature(faulted), stage)
        survived += [f"{stage} x {p}" for p in points]
    print(f"fault matrix: {len(survived)} kills survived: {', '.join(survived)}")
