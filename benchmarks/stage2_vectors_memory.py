"""Claim: stage 2 encodes every item to disk chunk by chunk: the pass's peak stays flat in the catalogue.

For each number of items, a chorus-states file of random states (16 x 64 float32 an item, as the
student writes it) is made; then, in a fresh process whose peak RSS is reset just before:

- `disk`: `rgcd.training.decomposition.encode_all` writes both vectors of every item to a file as
  each chunk is encoded, then the vectors are read back `transfer.write_batch_rows` rows at a time
  (what the item_embeddings writer does);
- `memory`: what stage 2 did before (its former `encode_all`, reproduced here): every chunk's
  vectors kept in lists and concatenated into two N x dim arrays, then the same batches taken
  from the arrays.

Both must give the same vectors (a checksum of every batch: checked).

    python benchmarks/stage2_vectors_memory.py --items 40000 320000

Writes benchmarks/results/stage2_vectors_memory.json. Figures of a shared machine: the load average
is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from results_format import machine_summary, write_result

ROOT = Path(__file__).resolve().parents[1]

MAKE = """
import numpy as np, polars as pl
from pathlib import Path
from rgcd.training.rows_on_disk import RowsWriter
n, folder = {items}, Path({folder!r})
writer = RowsWriter(folder / "chorus_states.safetensors", {{"chorus_states": (n, 16, 64)}},
                    {{"model_version": "bench"}})
rng = np.random.default_rng(0)
for s in range(0, n, 20_000):
    writer.write("chorus_states", s, rng.standard_normal((min(20_000, n - s), 16, 64), dtype=np.float32))
writer.close()
pl.DataFrame({{"row": np.arange(n), "item_id": [f"photo:{{i}}" if i % 2 else f"live:{{i}}" for i in range(n)],
              "domain": ["photo" if i % 2 else "live" for i in range(n)]}}).write_parquet(
    folder / "chorus_index.parquet")
"""

ENCODE = """
import hashlib, json
from pathlib import Path
import numpy as np, torch
from rgcd.config import TransferConfig
from rgcd.memory import peak_rss_bytes, reset_peak_rss, trim_heap
from rgcd.training.chorus_states import ChorusStates
from rgcd.training.decomposition import QueryAggregation, encode_all, encode_items
from rgcd.training.rows_on_disk import RowsOnDisk
folder, mode = Path({folder!r}), {mode!r}
torch.set_num_threads(1)
cfg = TransferConfig()
states = ChorusStates(folder)
torch.manual_seed(0)
model = QueryAggregation(states.dim, cfg).eval()
digest = hashlib.sha256()
trim_heap(); reset_peak_rss(); base = peak_rss_bytes()
if mode == "disk":
    encode_all(model, states, cfg.encode_batch_size, folder / "vectors.safetensors")
    t, r = (RowsOnDisk(folder / "vectors.safetensors", n) for n in ("transferable", "residual"))
else:  # stage 2 before: every chunk kept, then concatenated
    ts, rs = [], []
    for s in range(0, len(states), cfg.encode_batch_size):
        rows = np.arange(s, min(s + cfg.encode_batch_size, len(states)))
        a, b = encode_items(model, states.take(rows), states.domains[rows])
        ts.append(a); rs.append(b)
    trim_heap()
    t, r = np.concatenate(ts), np.concatenate(rs)
    del ts, rs
batch = cfg.write_batch_rows
for s in range(0, len(states), batch):
    digest.update(t[s:s + batch].tobytes())
    digest.update(r[s:s + batch].tobytes())
peak = peak_rss_bytes()
print(json.dumps({{"growth": peak - base, "peak": peak, "digest": digest.hexdigest()}}))
"""


def _run(code: str) -> dict:
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if got.returncode:
        raise SystemExit(got.stderr[-3000:])
    out = got.stdout.strip().splitlines()
    return json.loads(out[-1]) if out else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[40_000, 320_000])
    args = parser.parse_args()
    runs = []
    for items in args.items:
        with tempfile.TemporaryDirectory(prefix="stage2-vectors-") as tmp:
            _run(MAKE.format(items=items, folder=tmp))
            got = {mode: _run(ENCODE.format(folder=tmp, mode=mode)) for mode in ("disk", "memory")}
        if got["disk"]["digest"] != got["memory"]["digest"]:
            raise SystemExit(f"{items} items: the vectors on disk differ from those in memory")
        runs.append({"items": items, **{f"{m}_growth_bytes": got[m]["growth"] for m in got},
                     **{f"{m}_process_peak_bytes": got[m]["peak"] for m in got}})
        print(json.dumps(runs[-1]), flush=True)
    load = os.getloadavg()
    small, large = runs[0], runs[-1]
    mib = 2**20

    def grew(mode: str) -> float:
        return (large[f"{mode}_growth_bytes"] - small[f"{mode}_growth_bytes"]) / mib

    write_result(
        ROOT / "benchmarks" / "results" / "stage2_vectors_memory.json",
        claim="stage 2 encodes every item to disk chunk by chunk: the pass's peak is flat in the catalogue",
        machine=machine_summary(f"shared, load average {load[0]:.1f}"),
        figures={"runs": runs, "load_average": [round(x, 2) for x in load],
                 "disk_growth_mib": round(grew("disk"), 1), "memory_growth_mib": round(grew("memory"), 1)},
        headline=(f"{small['items']:,} -> {large['items']:,} items: the encode pass's peak "
                  f"{grew('disk'):+.0f} MiB written to disk, {grew('memory'):+.0f} MiB kept in memory "
                  f"(load {load[0]:.1f})"),
        peer="the same pass keeping every vector in memory (stage 2 before)",
        ratio=None,
        command="python benchmarks/stage2_vectors_memory.py --items " + " ".join(map(str, args.items)),
    )


if __name__ == "__main__":
    main()
