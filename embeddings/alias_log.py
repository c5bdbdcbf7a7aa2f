"""The readers' alias over time: every switch `rgcd publish` and `rgcd publish --rollback` make.

One JSON line per switch in <workspace>/milvus/alias_history.jsonl: {"at" (ISO, UTC), "action"
(publish | rollback), "model_version", "collection", "previous" (the collection the alias left, or
null)}. Milvus keeps only the alias's current target; this log is what the explorer's platform view
shows as the rollback history. A publish that changes nothing writes nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from rgcd.atomic import append_json_line
from rgcd.config import Workspace

FILE = "alias_history.jsonl"


def history_path(ws: Workspace) -> Path:
    return ws.milvus / FILE


def record_switch(ws: Workspace, action: str, model_version: str, collection: str,
                  previous: str | None) -> None:
    """Append one switch of the alias to the log."""
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "action": action,
             "model_version": model_version, "collection": collection, "previous": previous}
    append_json_line(entry, history_path(ws))


def read_switches(ws: Workspace, last: int = 50) -> list[dict]:
    """The newest `last` switches, oldest first ([] before the first publish); a torn line is skipped."""
    path = history_path(ws)
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines()[-last:]:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries
