"""Distill survives a kill: it resumes from its checkpoint to the weights of an uninterrupted run,
and a torn chorus states file is reported and rebuilt (in real subprocesses, killed with -9)."""

import os
import signal
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load, load_file
from stage1_world import write_world

from rgcd.config import Settings, Workspace

SMALL_STUDENT = {"tiny_hidden": 32, "tiny_layers": 2, "tiny_heads": 2, "tiny_vocab": 500, "steps": 40,
                 "batch_size": 16, "eval_items": 10, "checkpoint_every_steps": 10}


def _workspace(root) -> Workspace:
    from rgcd.featurestore.store import apply
    from rgcd.training.reasoning.run import reason

    ws = Workspace(root).ensure()
    ws.config_file.write_text(yaml.safe_dump({"student": SMALL_STUDENT}))
    write_world(ws.marts)
    settings = ws.settings()
    apply(ws, settings)
    reason(ws, settings, show_progress=False)
    return ws


def _distill(ws: Workspace, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RGCD_KILL_AT"}
    if kill_at:
        env["RGCD_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-c", "from rgcd.cli import cli; cli()", "-w", str(ws.root),
                           "distill"], env=env, capture_output=True, text=True, timeout=600)


def _weights(ws: Workspace) -> dict:
    model = ws.models / "student" / "model"
    return {**load_file(model / "model.safetensors"), **load_file(model / "chorus_head.safetensors")}


@pytest.mark.slow
def test_a_killed_distill_resumes_to_the_uninterrupted_weights_and_a_torn_states_file_is_rebuilt(
        tmp_path):
    import torch

    whole, killed = _workspace(tmp_path / "whole"), _workspace(tmp_path / "killed")
    assert _distill(whole).returncode == 0
    # killed at step 25: the checkpoint of step 20 is on disk, steps 21-25 are lost
    first = _distill(killed, kill_at="distill.train_step@25")
    assert first.returncode == -signal.SIGKILL
    assert [p.name for p in (killed.models / "student" / "checkpoints").iterdir()] == ["step-000000020"]
    assert not (killed.models / "student" / "model").exists()
    second = _distill(killed)
    assert second.returncode == 0, second.stderr
    a, b = _weights(whole), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (killed.models / "student" / "checkpoints").exists()  # cleared once the model is saved
    sa = load_file(whole.models / "student" / "chorus_states.safetensors")["chorus_states"]
    sb = load_file(killed.models / "student" / "chorus_states.safetensors")["chorus_states"]
    assert torch.equal(sa, sb)
    _a_torn_chorus_states_file_is_reported_and_rebuilt(killed)


def _a_torn_chorus_states_file_is_reported_and_rebuilt(ws: Workspace) -> None:
    """(Part of the test above, on its finished workspace: one distill run less in CI.)"""
    import torch

    states = ws.models / "student" / "chorus_states.safetensors"
    whole = states.read_bytes()
    expected = load(whole)["chorus_states"]  # from bytes: a mapped file would fault once truncated
    states.write_bytes(whole[: len(whole) // 3])
    rerun = _distill(ws)
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    notes = [line for line in rerun.stderr.splitlines() if "chorus_states.safetensors" in line]
    assert len(notes) == 1 and "unreadable" in notes[0]
    assert torch.equal(load_file(states)["chorus_states"], expected)  # rebuilt from the finished model


def test_checkpoint_cadence_does_not_change_the_model_version():
    from rgcd.training.distill import _fingerprint

    s = Settings().student
    assert _fingerprint(s, {"a": "b"}, "base") == _fingerprint(
        s.model_copy(update={"checkpoint_every_steps": 7}), {"a": "b"}, "base")
