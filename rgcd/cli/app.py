"""The root of the `rgcd` command line: the group, its context, and the one place errors become one line.

Commands live one module per group beside this file (rgcd/cli/*.py); each is a plain function
underneath, callable from a test without a subprocess."""

from __future__ import annotations

from pathlib import Path

import click
import pydantic
import yaml
from rich.console import Console

from rgcd.config import Settings, Workspace, load_settings
from rgcd.errors import RgcdError

console = Console(stderr=True)

EXIT_CONTRACT = 2


class ConfigError(click.ClickException):
    """The YAML configuration does not parse or does not fit the settings; exits 2."""

    exit_code = EXIT_CONTRACT


class Context:
    def __init__(self, workspace: Path, config: Path | None = None) -> None:
        self.ws = Workspace(workspace)
        self.config = config

    @property
    def settings(self) -> Settings:
        path = self.config or self.ws.config_file
        try:
            return load_settings(self.config) if self.config else self.ws.settings()
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML ({err}); fix it (rgcd.example.yaml shows "
                              "every setting with its default)") from None
        except pydantic.ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
            raise ConfigError(f"{path} does not fit the settings ({problems}); fix it "
                              "(rgcd.example.yaml shows every setting with its default)") from None


pass_ctx = click.make_pass_decorator(Context)


class RgcdGroup(click.Group):
    """The root group: an `RgcdError` from any command becomes one red line and its exit code (2 for
    what the user can fix), never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RgcdError as err:
            console.print(f"[red]error:[/] {err}")
            ctx.exit(err.exit_code)


@click.group(cls=RgcdGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--workspace", "-w", type=click.Path(file_okay=False, path_type=Path),
              default=Path("workspace"), show_default=True, envvar="RGCD_WORKSPACE",
              help="Folder that holds everything a run writes: lake, quarantine, warehouse, marts, "
                   "feast, milvus, models, reports. Its rgcd.yaml (optional) is the configuration.")
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, envvar="RGCD_CONFIG",
              help="YAML configuration (default: <workspace>/rgcd.yaml if it exists, else built-in "
                   "defaults; see rgcd.example.yaml).")
@click.version_option(package_name="rgcd")
@click.pass_context
def cli(ctx: click.Context, workspace: Path, config: Path | None) -> None:
    """rgcd: reasoning-guided cross-domain embeddings, short videos -> live streams.

    Data moves one way: raw logs (KuaiLive-M3 layout) -> lake -> dbt marts -> Feast ->
    models -> vectors -> Milvus. `rgcd run` does all of it; the other commands run one stage.
    """
    from rgcd.terminal import clean_terminal, files_inside

    ctx.with_resource(clean_terminal())
    ctx.obj = Context(workspace, config)
    if ctx.invoked_subcommand not in (None, "demo-data"):  # the ones that may start Feast
        ctx.with_resource(files_inside(ctx.obj.ws))


SKIPPED = "skipped: "  # a stage that did not run starts its line with this (pipeline.py)


def stage_mark(name: str, line: str) -> str:
    """The status mark of a finished stage: ✓ when it ran, a yellow dash when it says it skipped."""
    if line.startswith(SKIPPED):
        return f"[yellow]- {name:<10}[/]"
    return f"[green]✓ {name:<10}[/]"
