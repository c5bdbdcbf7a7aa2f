"""The model stages: `rgcd reason`, `distill`, `transfer`, `evaluate`, `publish`."""

from __future__ import annotations

import click

from rgcd.cli.app import Context, cli, console, pass_ctx


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
                   "method rgcd, rgcd-no-reasoning, rgcd-no-decomposition, rgcd-no-routing, rgcd-no-stage2 "
                   "(default: after the baselines, once `rgcd distill` has run).")
@pass_ctx
def evaluate(c: Context, seeds: list[int] | None, run_name: str | None, models: str | None) -> None:
    """Train the baselines on the training splits and rank the test cases of both protocols.

    klm3-cdr (the KuaiLive-M3 benchmark: live authors, full-sort, train/valid items excluded)
    and live-room (rooms on air at each test request), HR/Recall/NDCG at evaluation.ks, for all
    users, cold-start users and tail items. Reads the marts (run `rgcd build` first); writes
    metrics.json, report.md and PNG plots under <workspace>/reports/<run>/.
    """
    from rgcd.training.evaluation import run_evaluation
    from rgcd.training.report import rich_tables

    out, doc = run_evaluation(c.ws, c.settings.evaluation, seeds=seeds, run=run_name,
                              models=models.split(",") if models else None, settings=c.settings)
    for table in rich_tables(doc):
        console.print(table)
    console.print(f"[green]✓[/] report -> {out} ({doc['timing_s']['total']:.1f}s)")


@cli.command()
@click.option("--backend", type=click.Choice(["metadata", "openai", "hf", "world"]), default=None,
              help="Override teacher.backend. 'metadata' is a non-LLM baseline (categories and text); "
                   "'openai' is any OpenAI-compatible endpoint (teacher.base_url, teacher.model, key from "
                   "$RGCD_TEACHER_API_KEY or teacher.api_key_env, else $OPENAI_API_KEY); 'hf' is a local "
                   "model folder or .gguf file; 'world' is a simulated teacher for synthetic worlds only, "
                   "not an LLM (reads the generator's latent/ with accuracy teacher.world_accuracy).")
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
    from rgcd.training.reasoning.run import reason as run_reason

    c.ws.ensure()
    settings = c.settings
    overrides = {k: v for k, v in (("backend", backend), ("model", model), ("max_pairs", max_pairs)) if v}
    settings = settings.model_copy(update={"teacher": settings.teacher.model_copy(update=overrides)})
    report = run_reason(c.ws, settings)
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
    from rgcd.training.distill import distill as run_distill
    from rgcd.training.distributed import worker_line

    c.ws.ensure()
    report = run_distill(c.ws, c.settings)
    console.print(f"[green]✓[/] {report.one_line() if report else worker_line()}")


@cli.command()
@pass_ctx
def transfer(c: Context) -> None:
    """Stage 2: transferable and residual item vectors from the chorus states, and the retriever.

    Fits the query-aware aggregation on behaviour pairs (Feast's pair_training service, at the
    marts' latest event) with transferability routing, then the downstream two-tower retriever.
    Writes feature_data/item_embeddings.parquet (transferable, residual, retrieval for every item
    of both domains), feature_data/user_embeddings.parquet, models/transfer/versions/<version>/
    (safetensors), reports/transfer.json and reports/transfer_projection.png. Serving is untouched
    until `rgcd publish` (the only writer of what serving reads). Settings: the `transfer`
    section. A rerun with nothing changed retrains nothing.
    """
    from rgcd.training.distributed import worker_line
    from rgcd.training.stage2 import transfer as run_transfer

    c.ws.ensure()
    report = run_transfer(c.ws, c.settings)
    console.print(f"[green]✓[/] {report.one_line() if report else worker_line()}")


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
    from rgcd.embeddings import publish as pub

    report = pub.rollback(c.ws, c.settings) if rollback else pub.publish(c.ws, c.settings, model_version)
    console.print(f"[green]✓[/] {'rolled back: ' if rollback else ''}{report.one_line()}")
