"""DuckDB's memory limit and spill folder come from the configuration; stages report their peak."""

import re

import numpy as np
import pytest
from click.testing import CliRunner

from rgcd import pipeline
from rgcd.cli import cli
from rgcd.config import Settings, Workspace
from rgcd.memory import GIB, duckdb_connect, duckdb_limits, machine_ram_bytes, reset_peak_rss
from rgcd.warehouse import dbt_vars, profiles_env


def _settings(**warehouse) -> Settings:
    return Settings.model_validate({"warehouse": warehouse})


def test_the_limit_is_a_share_of_ram_unless_set_and_spills_inside_the_workspace(tmp_path):
    ws = Workspace(tmp_path / "ws")
    default = duckdb_limits(ws, Settings())
    assert default.memory_limit == pytest.approx(0.5 * machine_ram_bytes(), rel=1e-6)
    assert default.spill_folder == ws.root / "duckdb_spill" and default.spill_folder.is_dir()
    fixed = duckdb_limits(ws, _settings(memory_limit_gb=1.5, spill_folder="tmp/spill"))
    assert fixed.memory_limit == int(1.5 * GIB) and fixed.spill_folder == ws.root / "tmp" / "spill"


@pytest.mark.parametrize("folder", ["/tmp/elsewhere", "../outside", ""])
def test_a_spill_folder_outside_the_workspace_is_refused(folder):
    with pytest.raises(ValueError, match="inside the workspace"):
        _settings(spill_folder=folder)


def test_connections_and_dbt_get_the_configured_limit(tmp_path):
    ws = Workspace(tmp_path / "ws")
    settings = _settings(memory_limit_gb=1.0, spill_folder="spill")
    con = duckdb_connect(ws, settings)
    limit, temp, zone = con.sql("SELECT current_setting('memory_limit'), current_setting('temp_directory'), "
                                "current_setting('TimeZone')").fetchall()[0]
    assert limit in ("1024.0 MiB", "1.0 GiB") and temp == str(ws.root / "spill") and zone == "UTC"
    env = profiles_env(ws, settings)
    assert env["RGCD_DBT_MEMORY_LIMIT"] == "1024MiB"
    assert env["RGCD_DBT_SPILL_FOLDER"] == str(ws.root / "spill")


def test_the_pair_rule_reaches_dbt_as_vars():
    settings = _settings(pair_plays_per_user_day=7, pair_sessions_per_user_day=3, pair_max_per_user_day=11,
                         pair_min_strength=0.4)
    got = dbt_vars(Workspace("/tmp/x"), settings)
    assert (got["pair_plays_per_user_day"], got["pair_sessions_per_user_day"], got["pair_max_per_user_day"],
            got["pair_min_strength"]) == (7, 3, 11, 0.4)


def test_each_stage_line_ends_with_its_own_peak(tmp_path, monkeypatch):
    """A stage holding 400 MiB reports at least that; the next, small one, far less (reset between)."""
    if not reset_peak_rss():
        pytest.skip("this OS cannot reset the peak RSS (/proc/self/clear_refs)")

    def big(ws, settings, data):
        block = np.ones(400 * 2**20 // 8)
        return f"held {block.nbytes // 2**20} MiB"

    def small(ws, settings, data):
        return "held nothing"

    monkeypatch.setattr(pipeline, "STAGES", (pipeline.Stage("big", "allocates", big),
                                             pipeline.Stage("small", "does not", small)))
    result = CliRunner().invoke(cli, ["--workspace", str(tmp_path / "ws"), "run"])
    assert result.exit_code == 0, result.output
    peaks = {}
    for name in ("big", "small"):
        m = re.search(rf"✓ {name}.*\(\d+\.\ds, peak ([\d.]+) (GiB|MiB)\)", result.output)
        assert m, result.output
        peaks[name] = float(m.group(1)) * (1024 if m.group(2) == "GiB" else 1)
    assert peaks["big"] >= 400 and peaks["small"] < peaks["big"] - 300
