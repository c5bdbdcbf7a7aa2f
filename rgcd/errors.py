"""The one base class for errors a user can act on.

A stage raises a subclass with a message that says what happened and what to do; the command
line prints that message (no traceback) and exits with the subclass's `exit_code`.
"""


class RgcdError(Exception):
    """An error whose message tells the user what to do; `rgcd` exits with `exit_code`."""

    exit_code: int = 1


class InputError(RgcdError, ValueError):
    """A setting, file or argument the user gave cannot be used; the message says what to change."""

    exit_code = 2
