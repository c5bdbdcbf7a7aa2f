"""Kill points for the fault matrix: `RGCD_KILL_AT=<point>@<n>` SIGKILLs the process at the
n-th time (default the first) it passes `<point>`.

A test-only hook, off unless the variable is set: stages call `kill_point("ingest.commit")` at
the moments where a crash is most harmful (between two renames, mid-training, mid-encoding),
and tests/test_fault_matrix.py kills a subprocess there, reruns it and compares with a run that
was never killed. A SIGKILL is what an OOM killer or a pulled plug does: no `finally`, no
atexit, no flush.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV_VAR = "RGCD_KILL_AT"
_passes: Counter[str] = Counter()


def kill_point(name: str) -> None:
    """SIGKILL this process if RGCD_KILL_AT names this point and this is the chosen pass."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point != name:
        return
    _passes[name] += 1
    if _passes[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
