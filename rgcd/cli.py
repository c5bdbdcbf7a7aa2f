"""The `rgcd` command line: parse, call, print. Every command is a plain function underneath."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from rgcd.config import Settings, Workspace, load_settings
from rgcd.errors import RgcdError

console = Console(stderr=True)

EXIT_CONTRACT = 2


class Context:
    def __init__(self, workspace: Path, config: Path | None = None) -> None:
        self.ws = Workspace(workspace)
        self.config = config

    @property
    def settings(self) -> Settings:
        return load_settings(self.config) if self.config else self.ws.settings()


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    ctx.obj = Context(workspace, config)


@cli.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder in the KuaiLive-M3 layout. Without it, demo data is generated first.")
@pass_ctx
def run(c: Context, data: Path | None) -> None:
    """Run every stage in order (the main job).

    Stages that are not built yet are reported as such and skipped.
    """
    from rgcd.pipeline import STAGES

    c.ws.ensure()
    settings = c.settings
    started = time.perf_counter()
    for stage in STAGES:
        if stage.run is None:
            console.print(f"[yellow]- {stage.name:<10}[/] not built yet ({stage.what})")
            continue
        console.rule(f"[bold]{stage.name}[/]: {stage.what}")
        t0 = time.perf_counter()
        try:
            line = stage.run(c.ws, settings, data)
        except RgcdError as err:
            console.print(f"[red]✗ {stage.name:<10}[/] {err}")
            console.print("[dim]Fix the cause and run again: finished work is kept and reused.[/]")
            sys.exit(err.exit_code)
        console.print(f"[green]✓ {stage.name:<10}[/] {line} [dim]({time.perf_counter() - t0:.1f}s)[/]")
    console.print(f"[bold green]done[/] in {time.perf_counter() - started:.1f}s; workspace: {c.ws.root}")


@cli.command("demo-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--users", type=click.IntRange(min=10), default=20_000, show_default=True,
              help="Number of users (about 2000 for CI, 20000 for the demo).")
@click.option("--days", type=click.IntRange(min=2), default=14, show_default=True,
              help="Days of logs.")
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same files.")
def demo_data(out: Path, users: int, days: int, seed: int) -> None:
    """Write a synthetic world in the exact KuaiLive-M3 layout to OUT.

    Users have latent interests that drive both domains; creators post short videos and go
    live on related topics; some users have no live history before the cut (cold start).
    """
    from transforms.demo import generate

    summary = generate(out, users=users, days=days, seed=seed)
    console.print(f"[green]✓[/] {summary.one_line()} -> {out}")


@cli.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help='Print {"files": {stem: {"read", "accepted", "quarantined"}}} on stdout.')
@pass_ctx
def ingest(c: Context, src: Path, as_json: bool) -> None:
    """Validate a KuaiLive-M3-layout folder and write the lake.

    Rows that break the contract go to <workspace>/quarantine/<file>.parquet with a `reason`
    column. A missing required file or column stops with exit code 2. Re-ingesting the same
    folder leaves the lake unchanged.
    """
    from transforms.ingest import ContractError
    from transforms.ingest import ingest as run_ingest

    c.ws.ensure()
    try:
        report = run_ingest(src, c.ws, c.settings.ingest)
    except ContractError as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(EXIT_CONTRACT)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        console.print(report.table())


@cli.command()
@click.option("--full-refresh", is_flag=True,
              help="Rebuild the incremental (by-day) models from the whole lake instead of adding the "
                   "newest days; needed after older days of the lake were restated.")
@click.option("--select", "-s", default=None,
              help="dbt node selection, e.g. 'user_features_daily+' or 'tag:feast'.")
@click.option("--docs", is_flag=True, help="Also run `dbt docs generate` (into <workspace>/dbt/target).")
@pass_ctx
def build(c: Context, full_refresh: bool, select: str | None, docs: bool) -> None:
    """Run `dbt build` on the warehouse: lake -> staging -> intermediate -> marts, with every data
    test and unit test.

    The marts are written as parquet to <workspace>/marts/ (what Feast reads). A failing model or
    test prints dbt's own message and exits with code 1. Nothing may hold
    <workspace>/warehouse.duckdb open meanwhile. To run dbt directly, see the README section
    "Warehouse (dbt)".
    """
    from rgcd.warehouse import WarehouseError, generate_docs
    from rgcd.warehouse import build as run_build

    try:
        report = run_build(c.ws, c.settings, full_refresh=full_refresh, select=select)
        if docs:
            console.print(f"[green]✓[/] docs: {generate_docs(c.ws, c.settings) / 'index.html'}")
    except WarehouseError as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(1)
    console.print(f"[green]✓[/] {report.one_line()}")


@cli.command()
@click.option("--backend", type=click.Choice(["metadata", "openai", "hf"]), default=None,
              help="Override teacher.backend. 'metadata' is a non-LLM baseline (categories and text); "
                   "'openai' is any OpenAI-compatible endpoint (teacher.base_url, teacher.model, key from "
                   "$RGCD_TEACHER_API_KEY or teacher.api_key_env); 'hf' is a local model folder or "
                   ".gguf file.")
@click.option("--model", default=None,
              help="Override teacher.model (served model name, or a local path for hf).")
@click.option("--max-pairs", type=click.IntRange(min=1), default=None,
              help="Override teacher.max_pairs: how many of the strongest behaviour pairs to reason about.")
@pass_ctx
def reason(c: Context, backend: str | None, model: str | None, max_pairs: int | None) -> None:
    """Stage 1a: a teacher writes structured reasoning about the strongest behaviour pairs.

    Reads the behaviour_pairs and item_content marts; writes feature_data/item_reasoning.parquet and
    pair_reasoning.parquet (what Feast serves), rejected answers with their raw text to
    quarantine/pair_reasoning.parquet, and reports/reason.json. Answers are cached by (content hash,
    prompt version, teacher id), so a rerun or an interrupted run only asks for what is missing.
    """
    from training.frames import MissingInput
    from training.reasoning.run import reason as run_reason

    c.ws.ensure()
    settings = c.settings
    overrides = {k: v for k, v in (("backend", backend), ("model", model), ("max_pairs", max_pairs)) if v}
    settings = settings.model_copy(update={"teacher": settings.teacher.model_copy(update=overrides)})
    try:
        report = run_reason(c.ws, settings)
    except (MissingInput, ValueError, FileNotFoundError) as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(EXIT_CONTRACT)
    console.print(f"[green]✓[/] {report.one_line()}")


@cli.command()
@pass_ctx
def distill(c: Context) -> None:
    """Stage 1b: train the student with chorus tokens on the teacher's item knowledge.

    Writes the student to models/student/model (safetensors), every item's chorus states to
    models/student/chorus_states.safetensors + chorus_index.parquet, and reports/distill.json
    (held-out linear probe vs majority rate; generation reproduction per teacher field). Settings:
    the `student` section (base_path empty = a tiny untrained Qwen2 built from config, a stand-in).
    """
    from training.distill import distill as run_distill
    from training.frames import MissingInput

    c.ws.ensure()
    try:
        report = run_distill(c.ws, c.settings)
    except MissingInput as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(EXIT_CONTRACT)
    console.print(f"[green]✓[/] {report.one_line()}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
