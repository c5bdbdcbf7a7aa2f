"""`rgcd run`: every stage in order, the main job."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from rgcd.cli.app import Context, cli, console, pass_ctx, stage_mark
from rgcd.config import Settings, Workspace
from rgcd.errors import RgcdError


@cli.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder in the KuaiLive-M3 layout. Without it, demo data is generated first.")
@click.option("--stages", default=None, metavar="A,B,...",
              help="Run only these stages (comma-separated, in the pipeline's order), all in this "
                   "process. Default: every stage.")
@pass_ctx
def run(c: Context, data: Path | None, stages: str | None) -> None:
    """Run every stage in order (the main job).

    Stages that are not built yet are reported as such and skipped. The stages before
    `evaluate` run in a child process that exits before it starts, so the evaluation's worker
    processes start beside a process that holds nothing of the earlier stages (their heap).
    """
    from rgcd.pipeline import STAGES
    from rgcd.run_log import run_id

    run_id()  # one id for this run's log lines, the child process's included (rgcd/run_log.py)
    c.ws.ensure()
    settings = c.settings  # a configuration error stops the run before anything starts
    started = time.perf_counter()
    names = [st.name for st in STAGES]
    if stages is not None:
        chosen = [n.strip() for n in stages.split(",") if n.strip()]
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise click.BadParameter(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(names)}",
                                     param_hint="--stages")
        _run_stages(c.ws, settings, data, chosen)
        return
    fresh = next((i for i, st in enumerate(STAGES) if st.fresh_process), 0)
    if fresh:
        code = _run_child(c, data, names[:fresh])
        if code:
            sys.exit(code)
    _run_stages(c.ws, settings, data, names[fresh:])
    console.print(f"[bold green]done[/] in {time.perf_counter() - started:.1f}s; workspace: {c.ws.root}")


def _run_child(c: Context, data: Path | None, names: list[str]) -> int:
    """`rgcd run --stages <names>` in a child process; its exit code (its output is this one's)."""
    import subprocess

    cmd = [sys.executable, "-m", "rgcd.cli", "-w", str(c.ws.root),
           *(["-c", str(c.config)] if c.config else []), "run", "--stages", ",".join(names),
           *(["--data", str(data)] if data else [])]
    try:
        sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's runner): pass it on
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.write(line)
        return child.wait()
    sys.stdout.flush()
    return subprocess.run(cmd).returncode  # the terminal itself: progress bars and colours stay


def _run_stages(ws: Workspace, settings: Settings, data: Path | None, names: list[str]) -> None:
    """The named stages in order, one line each; exits with the error's code when one fails."""
    from rgcd.memory import format_bytes, peak_rss_bytes, reset_peak_rss
    from rgcd.pipeline import STAGES
    from rgcd.run_log import record_stage, run_id

    run_id()  # fixed before the first stage (a child run inherits its parent's)
    for stage in (st for st in STAGES if st.name in names):
        if stage.run is None:
            console.print(f"[yellow]- {stage.name:<10}[/] not built yet ({stage.what})")
            continue
        console.rule(f"[bold]{stage.name}[/]: {stage.what}")
        t0 = time.perf_counter()
        reset_peak_rss()  # each stage's own high-water mark, not the run's so far
        try:
            line = stage.run(ws, settings, data)
        except RgcdError as err:
            record_stage(ws.root, stage.name, str(err), False, time.perf_counter() - t0, peak_rss_bytes())
            console.print(f"[red]✗ {stage.name:<10}[/] {err}")
            console.print("[dim]Fix the cause and run again: finished work is kept and reused.[/]")
            sys.exit(err.exit_code)
        record_stage(ws.root, stage.name, line, True, time.perf_counter() - t0, peak_rss_bytes())
        console.print(f"{stage_mark(stage.name, line)} {line} [dim]({time.perf_counter() - t0:.1f}s, "
                      f"peak {format_bytes(peak_rss_bytes())})[/]")
