"""Serving: `rgcd retrieve`, `rgcd rooms start|end`, `rgcd serve`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rgcd.cli.app import EXIT_CONTRACT, Context, cli, console, pass_ctx


def _retriever(c: Context):
    from rgcd.embeddings.retrieval import Retriever

    return Retriever(c.ws, c.settings)


@cli.command()
@click.option("--user", "user_id", type=int, default=None, help="User -> live: a user_id.")
@click.option("--item", "item_id", default=None, help="Short video -> live: photo:<photo_id>.")
@click.option("--at", default=None,
              help="Request time, ISO 8601 (naive = UTC) or epoch ms; only rooms on air then are "
                   "candidates. Default: now.")
@click.option("--k", type=int, default=None, help="Candidates to return (default retrieval.default_k).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"model_version", "query", "at", "source", "candidates": [{"item_id", '
                   '"author_id", "score", "reason"}]} on stdout.')
@pass_ctx
def retrieve(c: Context, user_id: int | None, item_id: str | None, at: str | None, k: int | None,
             as_json: bool) -> None:
    """Retrieve live rooms on air for a user (--user) or a short video (--item).

    `source` says how the query vector was found: user_vector, recent_short_videos (a user without
    a vector: the mean of their recent short videos), popular_on_air (neither), item_vector.
    Exit 2 for an unknown user or item, bad parameters, or a model version mismatch.
    """
    from rich.table import Table

    from rgcd.embeddings.retrieval import parse_at

    if (user_id is None) == (item_id is None):
        console.print("[red]error:[/] give exactly one of --user U or --item photo:P")
        sys.exit(EXIT_CONTRACT)
    retriever = _retriever(c)
    try:
        when = parse_at(at)
        answer = retriever.for_user(user_id, when, k) if user_id is not None else \
            retriever.for_item(item_id, when, k)
    finally:
        retriever.close()
    if as_json:
        click.echo(json.dumps(answer.as_json()))
        return
    table = Table(title=f"{answer.query} at {answer.at:%Y-%m-%d %H:%M:%S} UTC · {answer.model_version} · "
                        f"source {answer.source}")
    for col in ("room", "author", "score", "reason"):
        table.add_column(col)
    for cand in answer.candidates:
        table.add_row(cand.item_id, str(cand.author_id), f"{cand.score:.4f}", cand.reason)
    console.print(table)


@cli.group()
def rooms() -> None:
    """Rooms going on air and off air between training runs (Milvus + Feast online store).

    With the embedded Milvus Lite file only one process may open it: while `rgcd serve` runs, send
    rooms to it (POST /rooms/start, POST /rooms/{id}/end) instead.
    """


@rooms.command("start")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def rooms_start(c: Context, file: Path) -> None:
    """Put the rooms in FILE on air: JSON list (or {"rooms": [...]}), JSON lines, or parquet.

    A room: live_id (or item_id live:<id>), author_id, start_timestamp (optional, default now) and,
    until stage 2's room encoder lands, transferable, residual and retrieval vectors with their
    model_version (must equal the published version).
    """
    from rgcd.embeddings.rooms import read_rooms_file, start_rooms

    rooms_in = read_rooms_file(file)
    retriever = _retriever(c)
    try:
        report = start_rooms(retriever, rooms_in)
    finally:
        retriever.close()
    console.print(f"[green]✓[/] {report.one_line()}")


@rooms.command("end")
@click.argument("item_id")
@click.option("--at", default=None, help="End time, ISO 8601 or epoch ms (default now).")
@pass_ctx
def rooms_end(c: Context, item_id: str, at: str | None) -> None:
    """Take room ITEM_ID (live:<id>) off air: it leaves the candidates of every later request."""
    from rgcd.embeddings.retrieval import parse_at
    from rgcd.embeddings.rooms import end_room

    retriever = _retriever(c)
    try:
        ended = end_room(retriever, item_id, parse_at(at) if at else None)
    finally:
        retriever.close()
    console.print(f"[green]✓[/] {item_id} {'off air' if ended else 'had already ended'}")


@cli.command()
@click.option("--host", default=None, help="Address to bind (default retrieval.host, 127.0.0.1); 0.0.0.0 "
                                           "exposes the service beyond this machine.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="TCP port (default retrieval.port, 8765).")
@click.option("--workers", type=int, default=None,
              help="Worker processes (default retrieval.serve_workers, 1); more than 1 needs "
                   "retrieval.milvus_uri to name a Milvus server.")
@pass_ctx
def serve(c: Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Retrieval over HTTP: GET /retrieve/user/{id}, GET /retrieve/item/{photo:id}, POST /rooms/start,
    POST /rooms/{id}/end, GET /health, GET /version (JSON errors: 404, 422, 409, 503).

    Runs in the foreground; stop it with SIGTERM (Ctrl-C). OpenAPI docs at /docs.
    """
    from rgcd.embeddings.service import serve as run_service

    settings = c.settings
    run_service(c.ws, settings, host or settings.retrieval.host, port or settings.retrieval.port, workers)
