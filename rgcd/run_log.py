"""What `rgcd run` did, stage by stage: <workspace>/runs/stages.jsonl.

One JSON line per stage finished (or failed): {"run" (the run's id: its start time, shared by the
child process that runs the stages before evaluate), "stage", "line" (the stage's one line of
figures, or the error), "ok", "seconds", "peak_bytes", "finished" (ISO, UTC)}. The explorer's
platform view shows the last run's stages from it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from rgcd.atomic import append_json_line

RUN_ENV = "RGCD_RUN_ID"  # the id a child `rgcd run --stages` inherits from its parent run


def log_path(root: Path) -> Path:
    return Path(root) / "runs" / "stages.jsonl"


def run_id() -> str:
    """This run's id: the parent's when started by one, else now (and passed on to children)."""
    return os.environ.setdefault(RUN_ENV, datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))


def record_stage(root: Path, stage: str, line: str, ok: bool, seconds: float, peak_bytes: int) -> None:
    """Append one stage's outcome to the workspace's run log."""
    finished = datetime.now(UTC).isoformat(timespec="seconds")
    append_json_line({"run": run_id(), "stage": stage, "line": line, "ok": ok, "seconds": round(seconds, 2),
                      "peak_bytes": int(peak_bytes), "finished": finished}, log_path(root))


def last_run(root: Path) -> list[dict]:
    """The stages of the newest run in the log, in the order they finished ([] when none is logged)."""
    path = log_path(root)
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a kill: the others stand
            continue
    if not entries:
        return []
    newest = entries[-1]["run"]
    return [e for e in entries if e.get("run") == newest]
