"""Claim: on a CPU with native bfloat16, encoding in bfloat16 is faster and gives the same vectors.

The two encodes that cost the demo run minutes: the student's chorus states of every item
(`rgcd distill`, `student.encode_dtype`) and content_text's MiniLM vectors (`rgcd evaluate`,
`evaluation.text_encode_dtype`). Peer: the same model, the same inputs, in float32, in one run.
Reported: items (texts) per second in each dtype, the ratio, and the agreement of the vectors
(cosine of each bfloat16 vector with its float32 one: min and mean over the items).

    PYTHONPATH=. python benchmarks/bf16_encoding.py --workspace WS [--items 4096] [--texts 1500]

WS is a workspace after `rgcd distill` (its trained student and item_content mart are read; e.g.
`make demo`'s). Writes benchmarks/results/bf16_encoding.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from rgcd.training import text_encoder
from rgcd.training.distill import ITEM_COLUMNS, encode_items
from rgcd.training.precision import native_bf16
from rgcd.training.student import ChorusStudent


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _agreement(full: np.ndarray, half: np.ndarray) -> dict:
    full, half = full.reshape(len(full), -1), half.reshape(len(half), -1)
    cos = (full * half).sum(1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(half, axis=1))
    return {"cosine_min": round(float(cos.min()), 6), "cosine_mean": round(float(cos.mean()), 6)}


def student_encoding(ws: Path, n: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    student = ChorusStudent.from_pretrained(ws / "models" / "student" / "model").eval()
    half = copy.deepcopy(student).to(torch.bfloat16)
    items = (pl.read_parquet(ws / "marts" / "item_content.parquet").sample(n, seed=0)
             .select(ITEM_COLUMNS).to_dicts())
    encode_items(student, items[:256], 128)  # warm both paths up
    encode_items(half, items[:256], 128)
    t32, full = _timed(lambda: encode_items(student, items, 128))
    t16, low = _timed(lambda: encode_items(half, items, 128))
    return {"threads": threads, "items": n, "float32_items_per_s": round(n / t32, 1),
            "bfloat16_items_per_s": round(n / t16, 1), "speedup": round(t32 / t16, 2),
            **_agreement(full.numpy(), low.numpy())}


def minilm_encoding(ws: Path, n: int) -> dict:
    torch.set_num_threads(1)  # as evaluation's workers run it (evaluation.torch_threads)
    content = pl.read_parquet(ws / "marts" / "item_content.parquet")
    texts = ((content["title"].fill_null("") + " " + content["body_text"].fill_null(""))
             .str.strip_chars().unique().sort().head(n).to_list())
    text_encoder.encode(texts[:64], dtype="float32")
    text_encoder.encode(texts[:64], dtype="bfloat16")
    t32, full = _timed(lambda: text_encoder.encode(texts[64:], dtype="float32"))
    t16, low = _timed(lambda: text_encoder.encode(texts[64:], dtype="bfloat16"))
    text_encoder.release()
    m = len(texts) - 64
    return {"threads": 1, "texts": m, "float32_texts_per_s": round(m / t32, 1),
            "bfloat16_texts_per_s": round(m / t16, 1), "speedup": round(t32 / t16, 2),
            **_agreement(full, low)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--items", type=int, default=4096)
    ap.add_argument("--texts", type=int, default=1500)
    args = ap.parse_args()
    result = {
        "claim": "bfloat16 encoding is faster on a CPU with native bfloat16 and agrees with float32",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "native_bf16": native_bf16(), "load_avg_1m": round(os.getloadavg()[0], 2),
                    "torch": torch.__version__},
        "student_chorus_states": [student_encoding(args.workspace, args.items, t) for t in (2, 1)],
        "content_text_minilm": minilm_encoding(args.workspace, args.texts),
    }
    out = Path(__file__).parent / "results" / "bf16_encoding.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
