from click.testing import CliRunner

from rgcd.cli import cli
from rgcd.config import DemoDensity, Settings, load_settings


def test_every_command_has_help():
    import click

    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0

    def walk(group: click.Group, path: list[str]) -> None:
        for name, command in group.commands.items():
            res = runner.invoke(cli, [*path, name, "--help"])
            assert res.exit_code == 0, [*path, name]
            assert "Usage:" in res.output
            assert command.help, [*path, name]
            undocumented = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
            assert not undocumented, ([*path, name], undocumented)
            if isinstance(command, click.Group):
                walk(command, [*path, name])

    walk(cli, [])


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


def test_a_bad_config_is_a_message_naming_file_and_setting_not_a_traceback(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rgcd.yaml").write_text("demo:\n  userz: 3\n")
    res = CliRunner().invoke(cli, ["--workspace", str(ws), "ingest", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)
    assert "rgcd.yaml" in res.output and "demo.userz" in res.output and "rgcd.example.yaml" in res.output
    (ws / "rgcd.yaml").write_text("demo: [\n")
    res = CliRunner().invoke(cli, ["--workspace", str(ws), "ingest", str(tmp_path)])
    assert res.exit_code == 2 and "not valid YAML" in res.output


def test_demo_data_takes_its_defaults_from_the_config_like_run(tmp_path, monkeypatch):
    import rgcd.transforms.demo

    calls = []

    def fake_generate(out, users, days, seed, density, dirty_rate, covers):  # records; writes nothing
        calls.append((users, days, seed, density.plays_per_user_day, density.rooms_per_user, covers))
        raise SystemExit(0)

    monkeypatch.setattr(rgcd.transforms.demo, "generate", fake_generate)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rgcd.yaml").write_text("demo: {users: 300, days: 5, seed: 11, density: {rooms_per_user: 2.5}}\n")
    runner = CliRunner()
    runner.invoke(cli, ["--workspace", str(ws), "demo-data", str(tmp_path / "out")])
    runner.invoke(cli, ["--workspace", str(ws), "demo-data", str(tmp_path / "out"), "--users", "50"])
    runner.invoke(cli, ["--workspace", str(ws), "demo-data", str(tmp_path / "out"), "--kuailive-density",
                        "--plays-per-user-day", "100"])
    runner.invoke(cli, ["--workspace", str(ws), "demo-data", str(tmp_path / "out"), "--covers"])
    plays = DemoDensity().plays_per_user_day
    assert calls == [(300, 5, 11, plays, 2.5, False), (50, 5, 11, plays, 2.5, False),
                     (300, 5, 11, 100.0, 300.0, False), (300, 5, 11, plays, 2.5, True)]


def test_every_stage_of_run_is_a_command():
    """Each stage `rgcd run` runs can be run alone (`features` is a group); a lost @cli.command()
    once left `rgcd publish` undefined while its stage still ran."""
    from rgcd.pipeline import STAGES

    missing = [s.name for s in STAGES if s.name not in cli.commands]
    assert not missing, missing
