"""`rgcd run` on a KuaiLive-M3-layout world with the contract's legal edge cases that the demo
generator never makes (tests/edge_world.py): every built stage runs, none crashes."""

import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from edge_world import BIG_ROOM, BIG_USER, LIVE_ONLY_USER, write_edge_world  # noqa: E402

from rgcd.cli import cli  # noqa: E402
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
    result = CliRunner().invoke(cli, ["--workspace", str(ws), "run", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for stage in STAGES:
        if stage.run is not None and stage.name != "demo-data":
            assert f"✓ {stage.name}" in result.output, (stage.name, result.output)
    users = pl.read_parquet(ws / "lake" / "user_id_set" / "part-0.parquet")["user_id"]
    assert {BIG_USER, LIVE_ONLY_USER} <= set(users.to_list())
    items = pl.read_parquet(ws / "marts" / "item_content.parquet")
    assert f"live:{BIG_ROOM}" in set(items["item_id"].to_list())
    assert (ws / "models" / "student" / "chorus_states.safetensors").exists()
