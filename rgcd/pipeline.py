"""The stage order of `rgcd run`, nothing else.

Each stage is a function (workspace, settings, data folder) -> one line of figures. A stage whose
code does not exist yet is listed with `run=None` and reported as not built, never faked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rgcd.config import Settings, Workspace

StageFn = Callable[[Workspace, Settings, Path | None], str]


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    run: StageFn | None
    # `rgcd run` starts this stage in a process that ran none of the earlier ones (their heap,
    # ~1.7 GiB at the demo size, would sit beside the evaluation's worker processes)
    fresh_process: bool = False


def _demo_data(ws: Workspace, settings: Settings, data: Path | None) -> str:
    if data is not None:
        return f"skipped: using {data}"
    from rgcd.transforms.demo import generate

    summary = generate(ws.demo_data, users=settings.demo.users, days=settings.demo.days,
                       seed=settings.demo.seed, density=settings.demo.density, world=settings.demo.world,
                       dirty_rate=settings.demo.dirty_rate, covers=settings.demo.covers)
    return summary.one_line()


def _ingest(ws: Workspace, settings: Settings, data: Path | None) -> str:
    from rgcd.transforms.ingest import ingest

    report = ingest(data or ws.demo_data, ws, settings.ingest)
    return report.one_line()


def _build(ws: Workspace, settings: Settings, data: Path | None) -> str:
    from rgcd.warehouse import build

    return build(ws, settings).one_line()


def _features(ws: Workspace, settings: Settings, data: Path | None) -> str:
    from rgcd.featurestore.store import run_stage

    return run_stage(ws, settings)


def _reason(ws: Workspace, settings: Settings, data: Path | None) -> str:
    from rgcd.training.frames import MissingInput
    from rgcd.training.reasoning.run import reason

    try:
        return reason(ws, settings).one_line()
    except MissingInput as err:
        return f"skipped: {err}"


def _distill(ws: Workspace, settings: Settings, data: Path | None) -> str:
    from rgcd.training.distill import distill
    from rgcd.training.distributed import worker_line
    from rgcd.training.frames import MissingInput

    try:
        report = distill(ws, settings)
        return report.one_line() if report else worker_line()
    except MissingInput as err:
        return f"skipped: {err}"


def _transfer(ws: Workspace, settings: Settings, data: Path | None) -> str:
    from rgcd.training.distributed import worker_line
    from rgcd.training.frames import MissingInput
    from rgcd.training.stage2 import transfer

    try:
        report = transfer(ws, settings)
        return report.one_line() if report else worker_line()
    except MissingInput as err:
        return f"skipped: {err}"


def _publish(ws: Workspace, settings: Settings, data: Path | None) -> str:
    from rgcd.embeddings.publish import run_stage

    return run_stage(ws, settings)


def _evaluate(ws: Workspace, settings: Settings, data: Path | None) -> str:
    from rich.console import Console

    from rgcd.training.evaluation import run_evaluation
    from rgcd.training.report import one_line, rich_tables

    out, doc = run_evaluation(ws, settings.evaluation, settings=settings)
    console = Console(stderr=True)
    for table in rich_tables(doc):
        console.print(table)
    return one_line(doc, out)


STAGES: tuple[Stage, ...] = (
    Stage("demo-data", "generate the synthetic KuaiLive-M3 world (without --data)", _demo_data),
    Stage("ingest", "validate raw files, quarantine bad rows, write the lake", _ingest),
    Stage("build", "dbt build: staging -> intermediate -> marts", _build),
    Stage("features", "feast apply + materialize", _features),
    Stage("reason", "stage 1a: teacher reasoning over behaviour pairs", _reason),
    Stage("distill", "stage 1b: student with chorus tokens", _distill),
    Stage("transfer", "stage 2: transferable / residual decomposition", _transfer),
    Stage("publish", "item vectors to Feast and Milvus", _publish),
    Stage("evaluate", "both protocols, baselines, report", _evaluate, fresh_process=True),
)
