"""distill and transfer under `torchrun --standalone --nproc-per-node 2` equal one process's.

Tolerances, and why they are not zero:
- stage 2 (`rgcd transfer`'s fit): each rank encodes half of each batch, the whole batch is gathered
  and the one-process loss computed, so the gradient is the one-process gradient up to float32
  summation order: every item's vectors and the weights within 1e-4 after the fit. Except the
  attention's key bias: it shifts every key's score by the same amount, so its true gradient is
  zero and Adam turns the float32 noise of either run into steps of its own (measured: 0.026 apart
  after 40 steps, with the outputs equal to 1e-7).
- the student (`rgcd distill`): each rank's mean loss over its half of the batch is weighted by its
  share of the batch's knowledge tokens, so the averaged gradient is the one-process gradient up
  to float32 summation order: weights within 1e-5 after 30 steps, chorus states within 1e-4
  (measured 7e-7 and 3e-6; unweighted halves: 0.013 and 0.34). The multimodal term is a mean over
  the items with a vector, which the token weights do not weigh exactly, so it is off here
  (`mm_distill_weight: 0`); with it on the ranks' average is near, not equal to, one process's.
- encoding: the states of an item do not depend on which rank encodes it (the same weights, its
  own batch), so with one student both ways agree within float32 rounding (1e-5).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from rgcd.config import Settings, Workspace

pytestmark = pytest.mark.slow

TINY = {"student": {"tiny_hidden": 32, "tiny_layers": 2, "tiny_heads": 2, "tiny_vocab": 500, "steps": 30,
                    "batch_size": 16, "lr": 5e-3, "eval_items": 10, "checkpoint_every_steps": 10,
                    "encode_processes": 1, "encode_dtype": "float32", "mm_distill_weight": 0.0},
        "transfer": {"dim": 8, "n_queries": 2, "heads": 2, "steps": 40, "max_epochs": 10, "eval_every": 20,
                     "batch_size": 64, "checkpoint_every": 20, "held_out_fraction": 0.25},
        "evaluation": {"dim": 8, "contrastive_samples": 4096}}

# One rank's encoding of the catalogue, for the coverage check: `encode_all` of the saved student over
# the workspace's items in shards of 16, under torchrun; rank 0 records who wrote which shard.
ENCODE = """
import json, sys
from pathlib import Path
import torch
from safetensors import safe_open
from rgcd.config import Settings, Workspace
from rgcd.training import distributed
from rgcd.training.distill import encode_all
from rgcd.training.student_items import known_first as _known_first
from rgcd.training.frames import read_stage1_frames, stage1_cut
from rgcd.training.student import ChorusStudent
ws, out = Workspace(sys.argv[1]), Path(sys.argv[2])
distributed.start(Settings().distributed)
items, n_known = _known_first(read_stage1_frames(ws, Settings(), pairs=False).items, stage1_cut(ws))
student = ChorusStudent.from_pretrained(ws.student / "model").eval()
paths, index, _ = encode_all(student, items, out, "v", 32, False, shard_items=16, boundary=n_known)
if distributed.is_main():
    shards = []
    for p in paths:
        with safe_open(str(p), "pt") as f:
            rows = f.get_slice("chorus_states").get_shape()[0]
            shards.append({"name": p.name, "rank": f.metadata()["rank"], "rows": rows})
    (out / "shards.json").write_text(json.dumps({"shards": shards, "items": index["item_id"].to_list()}))
"""


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    got = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", *args], capture_output=True,
                         text=True, timeout=600, env=env)
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    return got


def _rgcd_under_torchrun(ws: Workspace, stage: str) -> str:
    rgcd = Path(sys.executable).with_name("rgcd")
    got = _torchrun("--no-python", str(rgcd), "-w", str(ws.root), stage)
    return got.stdout + got.stderr


def _max_gap(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture
def stage1_ws(tmp_path) -> Workspace:
    from stage1_world import write_world

    from rgcd.featurestore.store import apply
    from rgcd.training.reasoning.run import reason

    ws = Workspace(tmp_path / "ws").ensure()
    (ws.root / "rgcd.yaml").write_text(yaml.safe_dump(TINY))
    write_world(ws.marts, photos=60, lives=20, pairs=200)
    settings = Settings.model_validate(TINY)
    apply(ws, settings)
    reason(ws, settings, show_progress=False)
    return ws


def test_distill_on_two_processes_equals_one_and_the_shards_cover_every_item_once(stage1_ws, tmp_path):
    from rgcd.training.distill import distill

    ws, settings = stage1_ws, Settings.model_validate(TINY)
    out = _rgcd_under_torchrun(ws, "distill")
    assert "rank 1 of 2: its share done" in out and "items encoded" in out, out
    two_model = {p.name: load_file(p) for p in sorted((ws.student / "model").glob("*.safetensors"))}
    two_states = load_file(ws.student / "chorus_states.safetensors")["chorus_states"]
    two_losses = json.loads((ws.student / "model" / "losses.json").read_text())

    # the same stage in one process, from scratch
    for name in ("model", "chorus_states.safetensors", "chorus_index.parquet", "checkpoints"):
        path = ws.student / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    report = distill(ws, settings, show_progress=False)
    assert report is not None and report.steps == 30
    one_model = {p.name: load_file(p) for p in sorted((ws.student / "model").glob("*.safetensors"))}
    one_states = load_file(ws.student / "chorus_states.safetensors")["chorus_states"]
    one_losses = json.loads((ws.student / "model" / "losses.json").read_text())
    assert one_model.keys() == two_model.keys() and one_model
    gap = max(_max_gap(one_model[k], two_model[k]) for k in one_model)
    states_gap = float((one_states - two_states).abs().max())
    losses_gap = float(np.abs(np.array(one_losses) - np.array(two_losses)).max())
    assert gap < 1e-5 and states_gap < 1e-4 and losses_gap < 1e-5, (gap, states_gap, losses_gap)

    # encoding alone, with one student: two ranks' shards tile the catalogue, each item once
    enc, script = tmp_path / "enc", tmp_path / "encode.py"
    script.write_text(ENCODE)
    _torchrun(str(script), str(ws.root), str(enc))
    record = json.loads((enc / "shards.json").read_text())
    ranks = [s["rank"] for s in record["shards"]]
    assert set(ranks) == {"0", "1"} and ranks == sorted(ranks)  # rank 0 the first share, rank 1 the rest
    assert sum(s["rows"] for s in record["shards"]) == len(record["items"]) == one_states.shape[0]
    assert len(set(record["items"])) == len(record["items"])
    from rgcd.training.chorus_states import ChorusStates

    shards = sorted((enc / "chorus_shards" / "v").glob("part-*.safetensors"))
    merged = np.concatenate([ChorusStates.from_file(p).read(np.arange(len(ChorusStates.from_file(p))))
                             for p in shards])
    index = dict(zip(record["items"], range(len(record["items"])), strict=True))
    import polars as pl

    order = pl.read_parquet(ws.student / "chorus_index.parquet").sort("row")["item_id"].to_list()
    assert np.allclose(merged[[index[i] for i in order]], one_states.numpy(), atol=1e-5)
    for p in shards:
        with safe_open(str(p), "pt") as f:
            assert f.metadata()["rank"] in ("0", "1")


def test_transfer_fit_on_two_processes_equals_one(tmp_path):
    from transfer_world import build

    from rgcd.featurestore.store import apply
    from rgcd.training.decomposition import ablation_config
    from rgcd.training.stage2 import fit_at, training_cut

    ws = Workspace(tmp_path / "ws").ensure()
    (ws.root / "rgcd.yaml").write_text(yaml.safe_dump(TINY))
    build(ws, photos=80, lives=30, pairs=600)
    settings = Settings.model_validate(TINY)
    apply(ws, settings)
    out = _rgcd_under_torchrun(ws, "transfer")
    assert "rank 1 of 2: its share done" in out and "trained" in out, out
    fits = ws.models / "transfer" / "fits"
    (folder,) = list(fits.iterdir())
    two = load_file(folder / "model.safetensors")
    two_fit = json.loads((folder / "fit.json").read_text())
    shutil.move(folder / "vectors.safetensors", fits.parent / "two_vectors.safetensors")
    shutil.rmtree(fits)
    one = fit_at(ws, settings, ablation_config(settings.transfer, "rgcd"), training_cut(ws))
    assert not one.reused and one.fingerprint == folder.name
    ones = {k: v.detach() for k, v in one.model.state_dict().items() if k != "keys.bias"}
    assert _max_gap(ones, {k: v for k, v in two.items() if k != "keys.bias"}) < 1e-4
    vectors = load_file(folder.parent.parent / "two_vectors.safetensors")
    assert np.allclose(one.transferable, vectors["transferable"].numpy(), atol=1e-4)
    assert np.allclose(one.residual, vectors["residual"].numpy(), atol=1e-4)
    assert np.allclose(one.summary["losses"]["every_50"], two_fit["losses"]["every_50"], atol=1e-4)
    assert one.summary["stopping"]["best_step"] == two_fit["stopping"]["best_step"]
