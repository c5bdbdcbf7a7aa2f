"""The one format of benchmarks/results/*.json, shared by every benchmark script and by table.py.

A results file is one JSON object with exactly these keys:

    claim    what the benchmark measures, in a sentence
    command  the command that wrote the file
    commit   the git commit the code was at when it was measured (short hash)
    machine  the machine it ran on, in words (cores, CPU, load average)
    figures  every measured figure; figures["headline"] is the figure the table shows (a string)
    peer     what the figure is compared with, and that peer's figure (a string; null: no peer)
    ratio    the figure over the peer's, in words or as a number (null: no peer)

Scripts write it with `write_result`; `python benchmarks/table.py` turns the files into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

KEYS = ("claim", "command", "commit", "machine", "figures", "peer", "ratio")
ROOT = Path(__file__).resolve().parents[1]


class ResultFormatError(ValueError):
    """A results file that is not in the one format (the message names the file and what is wrong)."""


def check_result(doc: object, name: str) -> dict:
    """Return `doc` if it is a results document in the one format; raise ResultFormatError naming `name`."""
    if not isinstance(doc, dict):
        raise ResultFormatError(f"{name}: not a JSON object")
    missing = [k for k in KEYS if k not in doc]
    extra = [k for k in doc if k not in KEYS]
    if missing or extra:
        raise ResultFormatError(
            f"{name}: " + "; ".join(filter(None, [missing and f"missing keys {missing}",
                                                  extra and f"unknown keys {extra}"]))
            + f" (a results file has exactly {list(KEYS)}; see benchmarks/results_format.py)")
    if not isinstance(doc["figures"], dict) or not isinstance(doc["figures"].get("headline"), str):
        raise ResultFormatError(f"{name}: figures must be an object with a string 'headline'")
    for key in ("claim", "command", "commit", "machine"):
        if not isinstance(doc[key], str) or not doc[key]:
            raise ResultFormatError(f"{name}: '{key}' must be a non-empty string")
    return doc


def read_result(path: Path) -> dict:
    """Read and check one results file."""
    path = Path(path).resolve()
    name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultFormatError(f"{name}: not valid JSON ({e})") from e
    return check_result(doc, name)


def current_commit() -> str:
    """The short hash of HEAD, with '+dirty' when the tracked code differs from it ('unknown' outside git)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return done.stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_summary(note: str = "") -> str:
    """The machine in words: cores, CPU, Python, and the 1-minute load average now."""
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0]
    words = f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, load {load:.1f}"
    return f"{words}; {note}" if note else words


def write_result(path: Path, *, claim: str, figures: dict, headline: str, peer: str | None,
                 ratio: str | float | None, command: str | None = None, machine: str | None = None) -> dict:
    """Write one results file in the one format (commit and machine filled in now) and return it."""
    doc = {
        "claim": claim,
        "command": command or "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "commit": current_commit(),
        "machine": machine or machine_summary(),
        "figures": {"headline": headline, **figures},
        "peer": peer,
        "ratio": ratio,
    }
    check_result(doc, Path(path).name)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    return doc
