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
    """Put the rooms in FILE on air: JSON list (or {"rooms": [...]}), JSON lines, or parquet (UTF-8).

    A room: live_id (or item_id live:<id>), author_id, start_timestamp (optional, ISO 8601 or epoch
    ms, default now; not in the future), and what the student reads: live_name, category_l1..4,
    mm_embedding (64 numbers). Its vectors are encoded by the student and the published stage-2
    model; a room may instead bring its own transferable, residual and retrieval vectors (unit
    vectors of the published lengths) with their model_version (the published one). Every room is
    checked before anything is written; at most 1,000 rooms per file.
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

    Runs in the foreground; stop it with SIGTERM (Ctrl-C). The routes: GET /openapi.json. Reads are
    open to whoever reaches the port; POST /rooms/... needs 'Authorization: Bearer <token>' with the
    token in $RGCD_WRITE_TOKEN (serving.write_token_env), and is off without one (docs/security.md).
    """
    from rgcd.embeddings.service import serve as run_service

    settings = c.settings
    run_service(c.ws, settings, host or settings.retrieval.host, port or settings.retrieval.port, workers)


@cli.command()
@click.option("--host", default=None, help="Address to bind (default retrieval.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="TCP port (default retrieval.port, 8765).")
@click.option("--no-open", is_flag=True, help="Print the page's address; open no browser.")
@pass_ctx
def explore(c: Context, host: str | None, port: int | None, no_open: bool) -> None:
    """The explorer: a page on `rgcd serve` (/explore/) with a user's rooms and why, a short video's
    rooms, the vector space, the yardstick and the platform (docs/explorer.md).

    Opens it in the browser once the service answers: the one already running on the port, else a
    service started here, in the foreground (stop it with Ctrl-C). Every request it makes reads.
    """
    import threading

    settings = c.settings
    host, port = host or settings.retrieval.host, port or settings.retrieval.port
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    url = f"{base}/explore/"
    if _answers(base):
        console.print(f"the explorer of the service already on {base}: {url}")
        if not no_open:
            _open(url)
        return
    console.print(f"starting `rgcd serve` on {host}:{port}; the explorer will be at {url} (Ctrl-C stops it)")
    if not no_open:
        threading.Thread(target=_open_when_ready, args=(base, url), daemon=True).start()
    from rgcd.embeddings.service import serve as run_service

    run_service(c.ws, settings, host, port)


def _answers(base: str) -> bool:
    """Whether an `rgcd serve` answers /health on `base` (200 published, 503 not yet)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2):
            return True
    except urllib.error.HTTPError as err:
        return err.code == 503
    except OSError:
        return False


def _open(url: str) -> None:
    import webbrowser

    if not webbrowser.open(url):
        console.print(f"no browser to open here: open {url}")


def _open_when_ready(base: str, url: str, seconds: float = 180.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _answers(base):
            console.print(f"[green]✓[/] the explorer: {url}")
            _open(url)
            return
        time.sleep(0.5)
