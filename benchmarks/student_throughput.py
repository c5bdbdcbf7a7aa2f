"""Claim: encoding items into chorus states costs little more than a bare forward pass of the same model.

Peer: the base LM's own forward pass (`base_model(input_ids)`, standard causal mask) over the same
number of tokens at the same batch size. The student adds the multimodal projector, the chorus
embeddings and a 4-D attention mask; "encode" also includes tokenising the items (`collate`).
Models are tiny Qwen2s built from config (random weights; speed does not depend on the weights).

    PYTHONPATH=. python benchmarks/student_throughput.py   ->  benchmarks/results/student_throughput.json
"""

from __future__ import annotations

import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import torch

from rgcd.training.student import ChorusStudent, ChorusStudentConfig, item_text
from rgcd.training.tiny_base import build_tiny_causal_lm

WORDS = [
    "noodles", "spicy", "recipe", "kitchen", "ranked", "boss", "speedrun", "arena", "song",
    "chords", "concert", "melody", "dunk", "goal", "workout", "match", "lipstick", "serum",
    "tutorial", "glow", "brush", "curls", "street", "food", "guitar", "piano", "makeup",
]
CATS = ["Food", "Gaming", "Music", "Sports", "Beauty"]


def synthetic_items(n: int, seed: int = 0) -> list[dict]:
    """Items shaped like item_content rows (both domains, vectors on most)."""
    rng = random.Random(seed)
    items = []
    for k in range(n):
        domain = "photo" if k % 3 else "live"
        dim = 128 if domain == "photo" else 64
        items.append(
            {
                "item_id": f"{domain}:{k}",
                "domain": domain,
                "title": " ".join(rng.choices(WORDS, k=6)),
                "body_text": " ".join(rng.choices(WORDS, k=30)),
                "category_l1": rng.choice(CATS),
                "category_l2": rng.choice(WORDS),
                "category_l3": "",
                "category_l4": "",
                "mm_embedding": [rng.gauss(0, 1) for _ in range(dim)] if k % 5 else None,
            }
        )
    return items


def _interleaved_rates(fns: dict, n_items: int, rounds: int) -> dict[str, float]:
    """Items/s of each function: median over rounds, the functions alternating within a round so
    that load from other processes hits all of them alike."""
    import statistics

    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: n_items / statistics.median(ts) for name, ts in times.items()}


def measure(
    hidden: int, layers: int, batch_size: int, items: list[dict], workdir: Path, rounds: int = 9
) -> dict:
    """Items/s of student encoding vs the bare forward pass, for one model size and batch size."""
    base = build_tiny_causal_lm(
        [item_text(it) for it in items],
        workdir / f"h{hidden}l{layers}",
        hidden=hidden,
        layers=layers,
        heads=4,
        vocab_size=2000,
    )
    student = ChorusStudent.from_base(ChorusStudentConfig(base_path=str(base))).eval()
    chunk = items[:batch_size]
    batch = student.collate(chunk)
    seq_len = student.chorus_start(batch) + student.cfg.n_chorus
    ids = torch.randint(0, len(student.tokenizer), (batch_size, seq_len))

    def encode():
        student.chorus_states(student.collate(chunk))

    def student_forward():
        student.chorus_states(batch)

    @torch.no_grad()
    def bare():
        student.lm.base_model(input_ids=ids, use_cache=False)

    rates = _interleaved_rates(
        {"encode": encode, "student_forward": student_forward, "bare_forward": bare}, batch_size, rounds
    )
    result = {
        "hidden": hidden,
        "layers": layers,
        "batch_size": batch_size,
        "seq_len": seq_len,
        **{f"{name}_items_per_s": rate for name, rate in rates.items()},
    }
    result["encode_vs_bare"] = result["encode_items_per_s"] / result["bare_forward_items_per_s"]
    result["student_forward_vs_bare"] = (
        result["student_forward_items_per_s"] / result["bare_forward_items_per_s"]
    )
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def main() -> None:
    """Run the grid and write benchmarks/results/student_throughput.json."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    items = synthetic_items(256)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for hidden, layers in ((64, 2), (256, 4)):
            for batch_size in (32, 128):
                rows.append(measure(hidden, layers, batch_size, items, Path(tmp)))
                print(rows[-1])
    out = Path(__file__).parent / "results" / "student_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "claim": "chorus-state encoding vs bare forward pass, same model and batch size",
                "torch_threads": 1,
                "load_average_1m_at_end": os.getloadavg()[0],
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
