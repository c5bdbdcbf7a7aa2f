"""The `rgcd` command line: parse, call, print. Every command is a plain function underneath."""

from __future__ import annotations

import json
import sys
import time
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
            console.print(f"[red]✗ {stage.name:<10}[/] {err}")
            console.print("[dim]Fix the cause and run again: finished work is kept and reused.[/]")
            sys.exit(err.exit_code)
        console.print(f"{stage_mark(stage.name, line)} {line} [dim]({time.perf_counter() - t0:.1f}s, "
                      f"peak {format_bytes(peak_rss_bytes())})[/]")


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
@click.option("--measure/--no-measure", default=True,
              help="Measure and print each channel's share of the latent topic (10-NN purity, probe).")
@pass_ctx
def demo_data(c: Context, out: Path, users: int | None, days: int | None, seed: int | None,
              plays_per_user_day: float | None, live_sessions_per_user_day: float | None,
              photos_per_user: float | None, rooms_per_user: float | None, dirty_rate: float | None,
              kuailive_density: bool, covers: bool | None, measure: bool) -> None:
    """Write a synthetic world in the exact KuaiLive-M3 layout to OUT.

    Users have latent interests that drive both domains; creators post short videos and go
    live on related topics; some users have no live history before the cut (cold start).
    """
    from rgcd.config import DemoDensity
    from transforms.demo import generate

    demo = c.settings.demo  # the same world `rgcd run` generates, unless an option says otherwise
    base = DemoDensity.kuailive_m3() if kuailive_density else demo.density
    given = {"plays_per_user_day": plays_per_user_day,
             "live_sessions_per_user_day": live_sessions_per_user_day,
             "photos_per_user": photos_per_user, "rooms_per_user": rooms_per_user}
    density = base.model_copy(update={k: v for k, v in given.items() if v is not None})
    summary = generate(out, users=demo.users if users is None else users,
                       days=demo.days if days is None else days, seed=demo.seed if seed is None else seed,
                       density=density, world=demo.world,
                       dirty_rate=demo.dirty_rate if dirty_rate is None else dirty_rate,
                       covers=demo.covers if covers is None else covers)
    console.print(f"[green]✓[/] {summary.one_line()} -> {out}")
    if measure:
        from transforms.world_signal import print_signal

        print_signal(out, console)


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


@cli.group()
def features() -> None:
    """Feast over the marts: apply the repo, sync it from dbt, fetch frames, materialize, serve.

    Definitions live in feature_repo/ (views over dbt marts are generated by `sync`); the registry
    and online store live in <workspace>/feast/.
    """


def _feature_store_errors():
    from rgcd.featurestore.dbt_sync import DbtFeastError
    from rgcd.featurestore.store import FeatureStoreError

    return (DbtFeastError, FeatureStoreError)


_REPO_OPTION = click.option(
    "--repo", "repo_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
    help="The Feast repo folder (default: this checkout's feature_repo/).")


@features.command("apply")
@_REPO_OPTION
@pass_ctx
def features_apply(c: Context, repo_dir: Path | None) -> None:
    """Register entities, views and services in <workspace>/feast (deletes removed ones)."""
    from rgcd.featurestore import store as fs

    try:
        report = fs.apply(c.ws.ensure(), c.settings, repo_dir or fs.REPO_DIR)
    except _feature_store_errors() as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(EXIT_CONTRACT)
    console.print(f"[green]✓[/] {report.one_line()}")


@features.command("sync")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Use this dbt manifest.json as is. Default: run `dbt parse` on dbt/ first (a few "
                   "seconds, no data needed) and read <workspace>/dbt/target/manifest.json.")
@click.option("--check", is_flag=True,
              help="Only check: exit 1 if views/generated.py differs from what the manifest gives (CI).")
@click.option("--no-apply", is_flag=True, help="Regenerate the file but do not apply.")
@_REPO_OPTION
@pass_ctx
def features_sync(c: Context, manifest: Path | None, check: bool, no_apply: bool,
                  repo_dir: Path | None) -> None:
    """Regenerate feature_repo/views/generated.py from the dbt marts tagged `feast`, then apply.

    A mart's dbt YAML says everything: `config: {tags: [feast], meta: {feast: {entity, join_key,
    timestamp_field, created_timestamp_column, ttl}}}` and a `data_type` on every column.
    """
    from rgcd.featurestore import dbt_sync
    from rgcd.featurestore import store as fs
    from rgcd.warehouse import WarehouseError

    repo = repo_dir or fs.REPO_DIR
    try:
        if manifest is None:
            manifest = fs.parse_dbt(c.ws.ensure(), c.settings)
        result = dbt_sync.sync(manifest, fs.entity_join_keys(repo), repo / fs.GENERATED, check=check)
        if check:
            if result.stale:
                console.print(f"[red]stale:[/] {result.path} differs from the dbt manifest; "
                              "run `rgcd features sync` and commit it")
                sys.exit(1)
            console.print(f"[green]✓[/] {result.path.name} is up to date ({len(result.views)} views)")
            return
        state = "regenerated" if result.stale else "unchanged"
        console.print(f"[green]✓[/] {result.path.name} {state}: {', '.join(result.views)}")
        if not no_apply:
            console.print(f"[green]✓[/] {fs.apply(c.ws.ensure(), c.settings, repo).one_line()}")
    except (*_feature_store_errors(), WarehouseError) as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(EXIT_CONTRACT)


@features.command("frame")
@click.argument("entities", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--service", default="training", show_default=True,
              help="Feature service (training, pair_training, ranker, retrieval).")
@click.option("--feature", "feature_refs", multiple=True,
              help="'view:feature' instead of a service (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Parquet file to write.")
@pass_ctx
def features_frame(c: Context, entities: Path, service: str, feature_refs: tuple[str, ...],
                   out: Path) -> None:
    """Point-in-time training frame: ENTITIES.parquet (join keys + event_timestamp) + features.

    A feature is taken as it was known at each row's event_timestamp: never a later value, null
    after the view's TTL, and regenerated views (reasoning, vectors) only if written by then.
    """
    import polars as pl

    from rgcd.featurestore import store as fs

    try:
        store = fs.feature_store(c.ws, c.settings)
        got = fs.frame(store, pl.read_parquet(entities), service=None if feature_refs else service,
                       features=list(feature_refs) or None)
    except _feature_store_errors() as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(EXIT_CONTRACT)
    from rgcd.atomic import write_parquet_atomic

    write_parquet_atomic(got, out)
    n_features = got.width - len(pl.read_parquet_schema(entities))
    console.print(f"[green]✓[/] {got.height} rows x {n_features} features -> {out}")


@features.command("materialize")
@pass_ctx
def features_materialize(c: Context) -> None:
    """Load the latest feature values into the online store (incremental after the first run)."""
    from rgcd.featurestore import store as fs

    try:
        report = fs.materialize(fs.feature_store(c.ws, c.settings),
                                slice_rows=c.settings.features.materialize_slice_rows)
    except _feature_store_errors() as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(EXIT_CONTRACT)
    console.print(f"[green]✓[/] {report.one_line()}")


@features.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 exposes the server beyond this machine.")
@click.option("--port", type=int, default=6566, show_default=True, help="TCP port to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Server worker processes [default: features.serve_workers, 0 there = one per CPU core].")
@pass_ctx
def features_serve(c: Context, host: str, port: int, workers: int | None) -> None:
    """Feast's HTTP feature server for rankers (POST /get-online-features, GET /health).

    Runs in the foreground; stop it with SIGTERM (Ctrl-C). Example request:
    {"feature_service": "ranker", "entities": {"user_id": [1, 1], "item_id": ["live:7", "live:9"]}}
    """
    from rgcd.featurestore import store as fs

    try:
        fs.serve(c.ws, c.settings, host=host, port=port, workers=workers)
    except _feature_store_errors() as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(EXIT_CONTRACT)


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 0,1,2, got {value!r}") from None


@cli.command()
@click.option("--seeds", callback=_int_list, default=None,
              help="Comma-separated seeds, e.g. 0,1,2: every model is trained and scored once per "
                   "seed and the report gives mean ± std. Default: evaluation.seeds of the config.")
@click.option("--run", "run_name", default=None,
              help="Report name: writes <workspace>/reports/NAME/. Default: the local time.")
@click.option("--models", default=None,
              help="Comma-separated model names (default: evaluation.models of the config): "
                   "popularity, bpr_mf, content_mm, content_text, uniembed, emcdr, and the full "
                   "method rgcd, rgcd-no-reasoning, rgcd-no-decomposition, rgcd-no-routing "
                   "(default: after the baselines, once `rgcd distill` has run).")
@pass_ctx
def evaluate(c: Context, seeds: list[int] | None, run_name: str | None, models: str | None) -> None:
    """Train the baselines on the training splits and rank the test cases of both protocols.

    klm3-cdr (the KuaiLive-M3 benchmark: live authors, full-sort, train/valid items excluded)
    and live-room (rooms on air at each test request), HR/Recall/NDCG at evaluation.ks, for all
    users, cold-start users and tail items. Reads the marts (run `rgcd build` first); writes
    metrics.json, report.md and PNG plots under <workspace>/reports/<run>/.
    """
    from training.evaluation import run_evaluation
    from training.report import rich_tables

    try:
        out, doc = run_evaluation(c.ws, c.settings.evaluation, seeds=seeds, run=run_name,
                                  models=models.split(",") if models else None, settings=c.settings)
    except RgcdError as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(err.exit_code)
    for table in rich_tables(doc):
        console.print(table)
    console.print(f"[green]✓[/] report -> {out} ({doc['timing_s']['total']:.1f}s)")


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

    Reads behaviour pairs and item content through Feast (after `rgcd build` and `rgcd features
    apply`); writes feature_data/item_reasoning.parquet and pair_reasoning.parquet (what Feast
    serves), rejected answers with their raw text to quarantine/pair_reasoning.parquet, and
    reports/reason.json. Answers are cached by (content hash,
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


@cli.command()
@pass_ctx
def transfer(c: Context) -> None:
    """Stage 2: transferable and residual item vectors from the chorus states, and the retriever.

    Fits the query-aware aggregation on behaviour pairs (Feast's pair_training service, at the
    marts' latest event) with transferability routing, then the downstream two-tower retriever.
    Writes feature_data/item_embeddings.parquet (transferable, residual, retrieval for every item
    of both domains), feature_data/user_embeddings.parquet, models/transfer/ (safetensors),
    reports/transfer.json and reports/transfer_projection.png, and materializes item_embeddings.
    Settings: the `transfer` section. A rerun with nothing changed retrains nothing.
    """
    from rgcd.featurestore.store import FeatureStoreError
    from training.frames import MissingInput
    from training.transfer_stage import transfer as run_transfer

    c.ws.ensure()
    try:
        report = run_transfer(c.ws, c.settings)
    except (MissingInput, FeatureStoreError, ValueError) as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(EXIT_CONTRACT)
    console.print(f"[green]✓[/] {report.one_line()}")


@cli.command()
@click.option("--rollback", is_flag=True,
              help="Point the readers' alias back at the version published before the current one "
                   "(and its vectors in the online store), instead of publishing.")
@click.option("--version", "model_version", default=None,
              help="The model version to publish (default: the newest in item_embeddings.parquet).")
@pass_ctx
def publish(c: Context, rollback: bool, model_version: str | None) -> None:
    """Publish stage 2's vectors: Feast's online store, then a validated Milvus collection per model
    version behind the alias readers use (retrieval.alias).

    The alias moves only after the new collection holds every published row and a sample of vectors
    finds itself; retrieval.keep_versions collections are kept for --rollback. Publishing the same
    version again changes nothing. Milvus: retrieval.milvus_uri (default <workspace>/milvus/rooms.db).
    """
    from embeddings import publish as pub

    try:
        report = pub.rollback(c.ws, c.settings) if rollback else pub.publish(c.ws, c.settings, model_version)
    except RgcdError as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(err.exit_code)
    console.print(f"[green]✓[/] {'rolled back: ' if rollback else ''}{report.one_line()}")


def _retriever(c: Context):
    from embeddings.retrieval import Retriever

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

    from embeddings.retrieval import parse_at

    if (user_id is None) == (item_id is None):
        console.print("[red]error:[/] give exactly one of --user U or --item photo:P")
        sys.exit(EXIT_CONTRACT)
    try:
        retriever = _retriever(c)
        try:
            when = parse_at(at)
            answer = retriever.for_user(user_id, when, k) if user_id is not None else \
                retriever.for_item(item_id, when, k)
        finally:
            retriever.close()
    except RgcdError as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(err.exit_code)
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
    from embeddings.rooms import read_rooms_file, start_rooms

    try:
        rooms_in = read_rooms_file(file)
        retriever = _retriever(c)
        try:
            report = start_rooms(retriever, rooms_in)
        finally:
            retriever.close()
    except RgcdError as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(err.exit_code)
    console.print(f"[green]✓[/] {report.one_line()}")


@rooms.command("end")
@click.argument("item_id")
@click.option("--at", default=None, help="End time, ISO 8601 or epoch ms (default now).")
@pass_ctx
def rooms_end(c: Context, item_id: str, at: str | None) -> None:
    """Take room ITEM_ID (live:<id>) off air: it leaves the candidates of every later request."""
    from embeddings.retrieval import parse_at
    from embeddings.rooms import end_room

    try:
        retriever = _retriever(c)
        try:
            ended = end_room(retriever, item_id, parse_at(at) if at else None)
        finally:
            retriever.close()
    except RgcdError as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(err.exit_code)
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
    from embeddings.service import serve as run_service

    settings = c.settings
    try:
        run_service(c.ws, settings, host or settings.retrieval.host, port or settings.retrieval.port, workers)
    except RgcdError as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(err.exit_code)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
