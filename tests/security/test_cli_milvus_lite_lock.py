"""Issue 25, medium (Deliver 7, the Milvus Lite part): while another process holds the workspace's
Milvus Lite file (`rgcd serve`, a publish), `rgcd publish` and `rgcd retrieve` fail in seconds, in one
line, naming the cause and the advice that fits each.

Before: refused only after 50 s and 71 s, after a ~20-line milvus_lite traceback, with advice that
was wrong for publish ("send the request to it over HTTP")."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from rgcd.cli import cli
from rgcd.config import Workspace

HOLD = """
import sys, time
from rgcd.config import Settings, Workspace
from rgcd.embeddings.milvus_store import RoomVectors
rooms = RoomVectors.connect(Workspace(sys.argv[1]).ensure(), Settings())
print("holding", flush=True)
time.sleep(120)
"""


@pytest.fixture
def held(tmp_path):
    """A workspace whose Milvus Lite file another process holds open (as `rgcd serve` does)."""
    ws = Workspace(tmp_path / "ws").ensure()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ws.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield ws
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.mark.parametrize("command,advice", [
    (["publish"], "To publish, stop `rgcd serve`"),
    (["publish", "--rollback"], "To publish, stop `rgcd serve`"),
    (["retrieve", "--user", "1"], "send the request to it over HTTP"),
    (["rooms", "end", "live:1"], "send the request to it over HTTP"),
])
def test_a_held_milvus_lite_file_fails_fast_with_the_cause(held, command, advice):
    t0 = time.perf_counter()
    out = CliRunner().invoke(cli, ["-w", str(held.root), *command])
    seconds = time.perf_counter() - t0
    text = " ".join(out.output.split())
    assert out.exit_code == 2, out.output
    assert "is open in another process" in text and advice in text and "Traceback" not in text
    assert seconds < 15, seconds
