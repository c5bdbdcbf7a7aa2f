"""The `rgcd` command line: `rgcd.cli.app` holds the root group; each module beside it one group of
commands (data, features, models, serving, run)."""

from rgcd.cli import data, features, models, run, serving  # noqa: F401  (they register their commands)
from rgcd.cli.app import cli


def main() -> None:
    cli()


__all__ = ["cli", "main"]
