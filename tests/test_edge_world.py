"""`rgcd run` on a KuaiLive-M3-layout world with the contract's legal edge cases that the demo
generator never makes (tests/edge_world.py): every built stage runs, none crashes. Run as a user
would with its output piped (`rgcd run | cat`): no warning, no escape code."""

import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from edge_world import BIG_ROOM, BIG_USER, LIVE_ONLY_USER, write_edge_world  # noqa: E402

from rgcd.pipeline import STAGES  # noqa: E402

SMALL = {
    "student": {"steps": 30, "max_train_items": 300, "eval_items": 30, "checkpoint_every_steps": 10},
    "evaluation": {"seeds": [0], "mf_samples": 2**14, "contrastive_samples": 2**13, "text_max_items": 100},
}


@pytest.mark.slow
def test_run_completes_on_the_edge_case_world(tmp_path):
    data = write_edge_world(tmp_path / "edge")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rgcd.yaml").write_text(yaml.safe_dump(SMALL))
    done = subprocess.run([sys.executable, "-c", "from rgcd.cli import cli; cli()", "--workspace", str(ws),
                           "run", "--data", str(data)], capture_output=True, text=True, timeout=1500)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "Traceback" not in output
    assert "\x1b[" not in output, "escape codes in piped output"
    assert not re.search(r"\w+Warning: ", output), re.findall(r".*\w+Warning: .*", output)
    for stage in STAGES:
        if stage.run is not None and stage.name != "demo-data":
            assert f"✓ {stage.name}" in output, (stage.name, output[-3000:])
    users = pl.read_parquet(ws / "lake" / "user_id_set" / "part-0.parquet")["user_id"]
    assert {BIG_USER, LIVE_ONLY_USER} <= set(users.to_list())
    items = pl.read_parquet(ws / "marts" / "item_content.parquet")
    assert f"live:{BIG_ROOM}" in set(items["item_id"].to_list())
    assert (ws / "models" / "student" / "chorus_states.safetensors").exists()
