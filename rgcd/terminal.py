"""What the user sees: no third-party warnings, no escape codes where output is not a terminal.

Applied at the command line's edge only (`rgcd.cli`), for the length of one command, so tests
and library callers still see every warning. Libraries print colour codes whatever the output
(Feast's materialize lines, dbt's log); a stream that is not a terminal gets them stripped.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rgcd.config import Workspace

# Warnings raised from our own modules stay visible: they are ours to fix.
OWN_MODULES = ("rgcd", "training", "transforms", "embeddings", "feature_repo", "benchmarks")
_ROOT = Path(__file__).resolve().parents[1]
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)")


def strip_ansi(text: str) -> str:
    """`text` without ANSI escape sequences (colours, cursor moves, hyperlinks)."""
    return _ANSI.sub("", text)


class PlainStream:
    """A text stream that writes through to `stream` with escape codes removed."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(strip_ansi(text))
        return len(text)

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _is_ours(filename: str) -> bool:
    path = Path(filename).resolve()
    return any(path.is_relative_to(_ROOT / name) for name in OWN_MODULES)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


@contextlib.contextmanager
def temporary_environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore them after (in-process callers, such
    as tests, see no leak)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def clean_terminal() -> Iterator[None]:
    """For one command: third-party warnings off; streams that are not terminals without codes."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        not_ours = r"(?!(" + "|".join(OWN_MODULES) + r")(\.|$))"
        warnings.filterwarnings("ignore", module=not_ours)
        # Libraries add filters of their own when imported (after this one, so before it in the
        # list): the last word is at display time, by the file the warning is attributed to.
        shown = warnings.showwarning

        def show_ours(message, category, filename, lineno, file=None, line=None):
            if _is_ours(filename):
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show_ours
        stack.callback(setattr, warnings, "showwarning", shown)
        if not _is_terminal(sys.stdout):
            stack.enter_context(contextlib.redirect_stdout(PlainStream(sys.stdout)))
            # dbt decides on colour itself; say no rather than strip after the fact
            stack.enter_context(temporary_environment({"DBT_USE_COLORS": "false", "NO_COLOR": "1"}))
        if not _is_terminal(sys.stderr):
            stack.enter_context(contextlib.redirect_stderr(PlainStream(sys.stderr)))
        yield


@contextlib.contextmanager
def files_inside(ws: Workspace) -> Iterator[None]:
    """Files that libraries write for a process go under the workspace, not /tmp or the home.

    `import feast` makes a prometheus folder in /tmp unless PROMETHEUS_MULTIPROCESS_DIR is set
    (one per command, never removed); gunicorn's control socket is placed by `store.serve`.
    """
    if os.environ.get("PROMETHEUS_MULTIPROCESS_DIR"):
        yield
        return
    folder = ws.feast / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    with temporary_environment({"PROMETHEUS_MULTIPROCESS_DIR": str(folder),
                                "PROMETHEUS_MULTIPROC_DIR": str(folder)}):
        yield
