"""rgcd.workers: results of every job, a job's error raised in the caller, no worker outliving a
killed parent."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rgcd.workers import results_as_completed

# Jobs and initializers are looked up by name in the spawned workers: library functions serve
# (os.getpid as an initializer that does nothing).


def test_every_job_is_run_and_its_result_yielded():
    got = sorted(results_as_completed(math.sqrt, [(4.0,), (9.0,), (16.0,)], 2, os.getpid))
    assert got == [2.0, 3.0, 4.0]


def test_a_failed_job_raises_its_error_in_the_caller():
    with pytest.raises(ValueError, match="math domain error"):
        list(results_as_completed(math.sqrt, [(4.0,), (-1.0,)], 2, os.getpid))


_PARENT = """
import time
from rgcd.workers import results_as_completed
print("started", flush=True)
for _ in results_as_completed(time.sleep, [(120,), (120,)], 2, time.time):
    pass
"""


def _workers_of(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    cmdlines = {k: Path(f"/proc/{k}/cmdline").read_text(errors="replace") for k in kids}
    return [k for k, cmd in cmdlines.items() if "spawn_main" in cmd and "resource_tracker" not in cmd]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_parent():
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while len(workers := _workers_of(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) == 2, workers
        os.kill(parent.pid, signal.SIGKILL)  # as an OOM killer would: no cleanup runs
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = [w for w in workers if Path(f"/proc/{w}").exists()
                 and "spawn_main" in Path(f"/proc/{w}/cmdline").read_text(errors="replace")]
        assert not alive, f"workers {alive} outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
