"""Issue 25, medium and low: hostile command-line inputs end in one line and exit 2, never a traceback;
`serve` on a copied workspace says what to do before it starts; help and output say what is true.

Before: `rgcd retrieve` with a user id above int64 or an out-of-range `at` printed a traceback and
exited 1; so did `rooms start` with a binary, Latin-1 or truncated file and `features frame` with a CSV;
`serve` on a copied workspace printed uvicorn's traceback and exited 3; `features materialize` printed
Feast's lines per window; `rooms start --help` spoke of a room encoder that had landed long ago."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from rgcd.cli import cli


def _one_line_exit_2(out) -> str:
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output and out.exception is None or isinstance(out.exception, SystemExit)
    assert out.output.count("error:") == 1, out.output
    return " ".join(out.output.split())  # rich wraps the line at the terminal's width


@pytest.mark.parametrize("args", [
    ["--user", "99999999999999999999"],
    ["--user", "1", "--at", "0001-01-01T00:00:00+14:00"],
    ["--user", "1", "--at", "9999-12-31T23:59:59-14:00"],
    ["--user", "1", "--at", "99999999999999999999"],
    ["--user", "1", "--at", "2999-01-01"],
    ["--user", "1", "--at", "0"],
    ["--item", "photo:²"],
    ["--item", "photo:99999999999999999999"],
])
def test_retrieve_with_hostile_input_is_one_line_and_exit_2(world, args):
    _one_line_exit_2(CliRunner().invoke(cli, ["-w", str(world.root), "retrieve", *args]))


# with its vectors, so that the room's own fields are what is checked (the world has no student)
ROOM = {"live_id": 9_100_001, "author_id": 501, "transferable": [1.0] + [0.0] * 7,
        "residual": [1.0, 0.0, 0.0, 0.0], "retrieval": [1.0] + [0.0] * 7, "model_version": "v1"}


@pytest.mark.parametrize("name,content", [
    ("binary.json", bytes(range(256)) * 4),
    ("latin1.json", json.dumps([ROOM | {"live_name": "caf\u00e9"}], ensure_ascii=False).encode("latin-1")),
    ("truncated.json", json.dumps([ROOM, ROOM])[:-9].encode()),
    ("truncated.parquet", b"PAR1\x15\x04\x15\x00"),
    ("rooms.json", json.dumps([ROOM | {"author_id": "--5"}]).encode()),
    ("rooms.jsonl", (json.dumps(ROOM | {"live_id": 99999999999999999999}) + "\n").encode()),
])
def test_rooms_start_with_a_bad_file_is_one_line_and_exit_2(world, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    _one_line_exit_2(CliRunner().invoke(cli, ["-w", str(world.root), "rooms", "start", str(path)]))


def test_features_frame_with_a_csv_entity_file_is_one_line_and_exit_2(world, tmp_path):
    entities = tmp_path / "entities.csv"
    entities.write_text("user_id,event_timestamp\n1,2025-05-10T00:00:00\n")
    out = CliRunner().invoke(cli, ["-w", str(world.root), "features", "frame", str(entities),
                                   "--out", str(tmp_path / "frame.parquet")])
    assert "not a parquet file" in _one_line_exit_2(out)


def test_serve_on_a_copied_workspace_before_apply_is_one_line_and_exit_2(world, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(world.root, copy)
    from servers import free_port

    out = CliRunner().invoke(cli, ["-w", str(copy), "serve", "--port", str(free_port())])
    assert "features apply" in _one_line_exit_2(out)


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(world):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = CliRunner().invoke(cli, ["-w", str(world.root), "serve", "--port", str(port)])
    assert "cannot bind" in _one_line_exit_2(out)


def test_features_materialize_prints_one_line_not_feasts_per_window_lines(world):
    out = CliRunner().invoke(cli, ["-w", str(world.root), "features", "materialize"])
    assert out.exit_code == 0, out.output
    assert "Materializing" not in out.output and "feature views from" not in out.output, out.output
    assert out.output.count("✓") == 1


def test_help_says_what_is_true():
    runner = CliRunner()
    rooms = runner.invoke(cli, ["rooms", "start", "--help"]).output
    assert "until stage 2" not in rooms and "encoded by the student" in rooms
    serve = " ".join(runner.invoke(cli, ["serve", "--help"]).output.split())
    assert "/docs" not in serve and "Bearer" in serve and "RGCD_WRITE_TOKEN" in serve


def test_serve_silences_weight_loading_bars_and_grpc_chatter(monkeypatch):
    """What `serve` sets before the libraries start: no progress bars, no gRPC log lines."""
    import os

    from rgcd.embeddings.service import quiet_third_party_logs

    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "GRPC_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
        monkeypatch.delenv(name, raising=False)
    quiet_third_party_logs()
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and os.environ["GRPC_VERBOSITY"] == "NONE"
    import transformers.utils.logging as tf_logging

    assert not tf_logging.is_progress_bar_enabled()
    tf_logging.enable_progress_bar()
