"""`rgcd run` end to end on a tiny demo world: every built stage runs, the others say so."""

import pytest
import yaml
from click.testing import CliRunner

from rgcd.cli import cli
from rgcd.pipeline import STAGES


@pytest.mark.slow
def test_run_goes_through_every_stage(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    small = {
        "demo": {"users": 400, "days": 6, "seed": 3},
        "student": {"steps": 40, "max_train_items": 300, "eval_items": 40},
        "evaluation": {"seeds": [0], "mf_samples": 2**15, "contrastive_samples": 2**14,
                       "text_max_items": 200},
    }
    (ws / "rgcd.yaml").write_text(yaml.safe_dump(small))
    result = CliRunner().invoke(cli, ["--workspace", str(ws), "run"])
    assert result.exit_code == 0, result.output
    for stage in STAGES:
        if stage.run is None:
            assert f"{stage.name}" in result.output and "not built yet" in result.output
        else:
            assert f"✓ {stage.name}" in result.output, stage.name
    assert any((ws / "lake" / "photo_play").rglob("*.parquet"))
    assert (ws / "demo_data" / "photo_play.parquet").exists()


def test_run_stops_with_the_stage_error_and_its_exit_code(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "user_id_set.csv").write_text("user_id\n1\n")
    result = CliRunner().invoke(cli, ["--workspace", str(tmp_path / "ws"), "run", "--data", str(raw)])
    assert result.exit_code == 2
    assert "✗ ingest" in result.output and "author_profile" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
