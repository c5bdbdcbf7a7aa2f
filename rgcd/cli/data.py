"""Commands for the data: `rgcd demo-data`, `rgcd ingest` (raw -> lake), `rgcd build` (dbt: lake -> marts)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rgcd.cli.app import Context, cli, console, pass_ctx


@cli.command("demo-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--users", type=click.IntRange(min=10), default=None,
              help="Number of users (about 2000 for CI, 20000 for the demo). "
                   "Default: demo.users of the config (20000).")
@click.option("--days", type=click.IntRange(min=2), default=None,
              help="Days of logs. Default: demo.days of the config (14).")
@click.option("--seed", type=int, default=None,
              help="Same seed, same files. Default: demo.seed of the config (7).")
@click.option("--plays-per-user-day", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Short-video plays per user and day (KuaiLive-M3: about 240). "
                   "Default: demo.density of the config.")
@click.option("--live-sessions-per-user-day", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Live sessions per user and day (KuaiLive-M3: about 76).")
@click.option("--photos-per-user", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Short videos in the catalogue per user (KuaiLive-M3: about 300).")
@click.option("--rooms-per-user", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Live rooms started in the window per user (KuaiLive-M3: about 300 over 21 days).")
@click.option("--dirty", "dirty_rate", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="Share of bad rows (every kind the contract names) appended to each file, with "
                   "dirt_manifest.json counting them. Default: demo.dirty_rate of the config (0.001).")
@click.option("--kuailive-density", is_flag=True,
              help="Start from KuaiLive-M3's per-user density instead of the config's "
                   "(the four options above still override it; use with --days 21).")
@click.option("--covers/--no-covers", default=None,
              help="Write a synthetic cover image per video and room and the cover_path column "
                   "(for vision-language teachers). Default: demo.covers of the config (off).")
@pass_ctx
def demo_data(c: Context, out: Path, users: int | None, days: int | None, seed: int | None,
              plays_per_user_day: float | None, live_sessions_per_user_day: float | None,
              photos_per_user: float | None, rooms_per_user: float | None, dirty_rate: float | None,
              kuailive_density: bool, covers: bool | None) -> None:
    """Write a synthetic world in the exact KuaiLive-M3 layout to OUT.

    Users have latent interests that drive both domains; creators post short videos and go
    live on related topics; some users have no live history before the cut (cold start).
    """
    from rgcd.config import DemoDensity
    from rgcd.transforms.demo import generate

    demo = c.settings.demo  # the same world `rgcd run` generates, unless an option says otherwise
    base = DemoDensity.kuailive_m3() if kuailive_density else demo.density
    given = {"plays_per_user_day": plays_per_user_day,
             "live_sessions_per_user_day": live_sessions_per_user_day,
             "photos_per_user": photos_per_user, "rooms_per_user": rooms_per_user}
    density = base.model_copy(update={k: v for k, v in given.items() if v is not None})
    summary = generate(out, users=demo.users if users is None else users,
                       days=demo.days if days is None else days, seed=demo.seed if seed is None else seed,
                       density=density, dirty_rate=demo.dirty_rate if dirty_rate is None else dirty_rate,
                       covers=demo.covers if covers is None else covers)
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
    from rgcd.transforms.ingest import ingest as run_ingest

    c.ws.ensure()
    report = run_ingest(src, c.ws, c.settings.ingest)
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
    from rgcd.warehouse import build as run_build
    from rgcd.warehouse import generate_docs

    report = run_build(c.ws, c.settings, full_refresh=full_refresh, select=select)
    if docs:
        console.print(f"[green]✓[/] docs: {generate_docs(c.ws, c.settings) / 'index.html'}")
    console.print(f"[green]✓[/] {report.one_line()}")
