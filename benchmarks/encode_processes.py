"""Claim: on a small machine, encoding every item in one process per core (one torch thread each)
is faster than one process using every core, and gives the same chorus states.

`rgcd distill` ends by encoding the whole catalogue (229,264 items at the demo size) with the
trained student (`student.encode_processes`, 0 = one process per core). Peer: the same
`rgcd.training.distill.encode_all` in this process on all cores (`processes=1`, torch's default
threads), same student, same items, same dtype (`student.encode_dtype`), in one run. Both
timings include everything the stage pays: the processes' start (imports, loading the student)
and writing the shards. Reported: items per second of each, the ratio, and the largest absolute
difference between their states.

    PYTHONPATH=. python benchmarks/encode_processes.py --workspace WS [--items 122880]

WS is a workspace after `rgcd distill` (e.g. `make demo`'s). Writes
benchmarks/results/encode_processes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.numpy import load_file

from rgcd.config import StudentConfig
from rgcd.training.distill import SHARD_ITEMS, encode_all, encode_processes
from rgcd.training.precision import dtype_name, encode_dtype
from rgcd.training.student import ChorusStudent


def _encode(student: ChorusStudent, items: pl.DataFrame, out: Path, model_dir: Path, processes: int,
            dtype: torch.dtype) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    parts, _, _ = encode_all(student, items, out, "bench", 128, False, dtype=dtype, model_dir=model_dir,
                             processes=processes)
    seconds = time.perf_counter() - t0
    return seconds, np.concatenate([load_file(p)["chorus_states"] for p in parts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--items", type=int, default=60 * SHARD_ITEMS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/encode_processes.json"))
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model_dir = args.workspace / "models" / "student" / "model"
    student = ChorusStudent.from_pretrained(model_dir).eval()
    catalogue = pl.read_parquet(args.workspace / "marts" / "item_content.parquet")
    items = catalogue.sample(min(args.items, catalogue.height), seed=0).sort("item_id")
    dtype = encode_dtype(StudentConfig().encode_dtype)
    processes = encode_processes(StudentConfig())
    with tempfile.TemporaryDirectory() as tmp:
        one_s, one = _encode(student, items, Path(tmp) / "one", model_dir, 1, dtype)
        many_s, many = _encode(student, items, Path(tmp) / "many", model_dir, processes, dtype)
    result = {
        "claim": "one encoder process per core beats one process on all cores, same states",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "items": items.height, "dtype": dtype_name(dtype),
        "one_process": {"threads": torch.get_num_threads(), "seconds": round(one_s, 2),
                        "items_per_s": round(items.height / one_s, 1)},
        "processes": {"processes": processes, "threads_each": 1, "seconds": round(many_s, 2),
                      "items_per_s": round(items.height / many_s, 1)},
        "speedup": round(one_s / many_s, 2),
        "max_abs_difference": float(np.abs(one - many).max()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
