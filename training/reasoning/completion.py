"""What a teacher backend answers for one request: its raw text, or the error that prevented one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Completion:
    """A backend's raw answer, or the error that prevented one.

    `reached` is False when the model was not reached at all (connection refused, timeouts after
    every retry): a batch where no request reached the model fails the stage (`TeacherUnreachable`),
    while a refused cover or an answer that breaks the schema is one pair's problem.
    """

    text: str | None
    error: str | None = None
    reached: bool = True
