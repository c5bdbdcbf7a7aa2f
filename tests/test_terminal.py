"""A clean terminal: no third-party warnings and no escape codes when output is piped, and the
files servers write (gunicorn's control socket, prometheus's folder) inside the workspace."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "feature_repo"))
from feast_marts import write_mart  # noqa: E402
from servers import free_port, wait_until_healthy  # noqa: E402

from rgcd.config import Workspace  # noqa: E402
from rgcd.terminal import PlainStream, clean_terminal, strip_ansi  # noqa: E402


def test_escape_codes_are_stripped():
    coloured = "\x1b[1m\x1b[32m3\x1b[0m views \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"
    assert strip_ansi(coloured) == "3 views link"
    out = io.StringIO()
    PlainStream(out).write("\x1b[31mred\x1b[0m")
    assert out.getvalue() == "red"


def test_third_party_warnings_are_silenced_ours_are_not():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with clean_terminal():
            warnings.warn_explicit("old api", DeprecationWarning, "ibis/x.py", 1, module="ibis.backends")
            warnings.warn_explicit("field shadows", UserWarning, "p.py", 1, module="pydantic._internal")
            warnings.warn_explicit("ours", UserWarning, str(Path(__file__).parents[1] / "rgcd" / "x.py"), 1,
                                   module="rgcd.warehouse")
        warnings.warn_explicit("after", DeprecationWarning, "ibis/x.py", 1, module="ibis.backends")
    assert [str(w.message) for w in seen] == ["ours", "after"]  # the edge only, for one command


def _rgcd(ws: Workspace, *args: str, env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from rgcd.cli import cli; cli()", "-w", str(ws.root), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_piped_output_is_plain_and_server_files_stay_in_the_workspace(tmp_path):
    from datetime import UTC, datetime

    t = datetime(2025, 5, 10, tzinfo=UTC)
    ws = Workspace(tmp_path / "ws").ensure()
    times = {"event_timestamp": [t], "created_timestamp": [t]}
    write_mart(ws.marts, "user_features_daily", {"user_id": [1], "sv_plays_7d": [3], **times})
    for mart in ("item_content", "live_schedule"):
        write_mart(ws.marts, mart, {"item_id": ["live:1"], **times})
    write_mart(ws.marts, "behaviour_pairs", {"pair_id": ["p"], **times})
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp_path / "tmp")}
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("PROMETHEUS_MULTIPROCESS_DIR", None)
    (tmp_path / "tmp").mkdir()
    for args in (["features", "apply"], ["features", "materialize"]):
        done = _rgcd(ws, *args, env=env)
        assert done.returncode == 0, done.stderr
        for text in (done.stdout, done.stderr):
            assert "\x1b[" not in text and "Warning" not in text, text
    # Feast's own per-window lines are swallowed (issue 25): one line of figures instead
    assert "Materializing" not in done.stdout + done.stderr and "materialized" in done.stdout + done.stderr

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from rgcd.cli import cli; cli()", "-w", str(ws.root),
                               "features", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_healthy(server, f"http://127.0.0.1:{port}", 120)
        socket_deadline = time.time() + 30  # gunicorn opens it from a thread after the workers start
        while not (ws.feast / "gunicorn.ctl").exists() and time.time() < socket_deadline:
            time.sleep(0.2)
        assert (ws.feast / "gunicorn.ctl").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    assert not (home / ".gunicorn").exists()
    assert not list((tmp_path / "tmp").glob("feast_metrics_*"))  # prometheus's folder is the workspace's
    assert (ws.feast / "metrics").is_dir()
    assert "\x1b[" not in output
