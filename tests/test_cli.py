from click.testing import CliRunner

from rgcd.cli import cli
from rgcd.config import Settings, load_settings


def test_every_command_has_help():
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0
    for name in cli.commands:
        res = runner.invoke(cli, [name, "--help"])
        assert res.exit_code == 0, name
        assert "Usage:" in res.output


def test_example_config_loads_into_settings(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "rgcd.example.yaml"
    assert load_settings(example) == Settings()
    bad = tmp_path / "bad.yaml"
    bad.write_text("demo:\n  userz: 3\n")
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        load_settings(bad)
