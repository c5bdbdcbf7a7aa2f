"""`rgcd milvus start|stop|status`: a workspace's packaged Milvus server (embeddings/milvus_server.py)."""

from __future__ import annotations

import json
import sys

import click

from rgcd.cli.app import Context, cli, console, pass_ctx


@cli.group()
def milvus() -> None:
    """The packaged Milvus server (pip `milvus` 2.3.5) for this workspace: the production twin of the
    embedded Milvus Lite file.

    Data under <workspace>/milvus-server; the server runs in a network namespace of its own (it
    listens on every interface whatever its configuration says) and is reached only through
    127.0.0.1:PORT. Point retrieval.milvus_uri at it (http://127.0.0.1:PORT) to publish and serve
    from it; stop it with `rgcd milvus stop` (by its launcher's pid).
    """


def _port(c: Context, port: int | None) -> int:
    from rgcd.embeddings.milvus_server import DEFAULT_PORT, port_of

    return port or port_of(c.settings.retrieval.milvus_uri) or DEFAULT_PORT


@milvus.command("start")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="127.0.0.1 port (default: retrieval.milvus_uri's when it names 127.0.0.1, else 19530).")
@pass_ctx
def milvus_start(c: Context, port: int | None) -> None:
    """Start the server in the background; returns when it answers (about 5-15 s)."""
    from rgcd.embeddings import milvus_server as ms

    state = ms.start(c.ws.root, _port(c, port), progress=lambda line: console.print(line))
    console.print(f"[green]✓[/] Milvus server on {state.uri} (launcher pid {state.pid}, {state.namespace}, "
                  f"ready in {state.started_s:.1f} s); data {ms.server_dir(c.ws.root)}")
    if c.settings.retrieval.milvus_uri.rstrip("/") != state.uri:
        console.print(f"  to use it: retrieval.milvus_uri: {state.uri}  (rgcd.yaml)")


@milvus.command("stop")
@pass_ctx
def milvus_stop(c: Context) -> None:
    """Stop the server: SIGINT to its launcher's pid, then wait until it has exited."""
    from rgcd.embeddings import milvus_server as ms

    state = ms.stop(c.ws.root)
    console.print(f"[green]✓[/] stopped the Milvus server (pid {state.pid})" if state
                  else "no Milvus server runs for this workspace")


@milvus.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def milvus_status(c: Context, as_json: bool) -> None:
    """Whether the server runs: URI, pids, memory, version. Exit 1 when it does not run."""
    from rgcd.embeddings import milvus_server as ms

    got = ms.status(c.ws.root)
    if as_json:
        click.echo(json.dumps(got))
    elif got["running"]:
        console.print(f"running: {got['uri']} (pid {got['pid']}, server pid {got['server_pid']}, "
                      f"{got['namespace']}), {got.get('version', got.get('error'))}, {got['rss_mib']} MiB "
                      f"resident; data {got['data_dir']}")
    else:
        console.print(f"not running (data {got['data_dir']})")
    sys.exit(0 if got["running"] else 1)
