"""Claim: distill reads its item frame through Feast in windows: the read's peak stays flat in the catalogue.

For each workspace given (marts built, Feast applied: e.g. two worlds of different sizes), two fresh
processes each read what distill reads of every item, with the peak RSS reset just before the read
(rgcd.memory; Feast and polars imported before it):

- `windows`: `StudentItems.read` (training/student_items.py), `--window` items per Feast read,
  written to a file of the run; then one pass over that file's slices, as encoding does;
- `whole`: what distill did before: `read_stage1_frames(pairs=False)` and the known-first order,
  the whole item frame in memory.

Both must give the same rows in the same order (the digest of what the student reads: checked).

    python benchmarks/distill_items_memory.py WS_SMALL WS_LARGE --window 5000

Writes benchmarks/results/distill_items_memory.json. Figures of a shared machine: the load average
is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from results_format import machine_summary, write_result

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
from pathlib import Path
import feast, polars as pl, rgcd.featurestore.store  # imported before the mark: every distill loads them
from rgcd.config import Settings, Workspace
from rgcd.memory import peak_rss_bytes, reset_peak_rss, trim_heap
from rgcd.training.frames import read_stage1_frames, stage1_cut
from rgcd.training.student_items import ItemsDigest, StudentItems, known_first
ws, mode, window = Workspace(Path({ws!r})), {mode!r}, {window}
s = Settings()
s = s.model_copy(update={{"student": s.student.model_copy(update={{"read_batch_items": window}})}})
cut = stage1_cut(ws)
trim_heap(); reset_peak_rss(); base = peak_rss_bytes()
if mode == "windows":
    items = StudentItems.read(ws, s, cut, ws.student / "items_read-bench.parquet")
    seen = sum(part.height for part in items.windows(size=window))  # the encoding pass's reads
    digest, rows, n_known = items.digest, items.height, items.n_known
    (ws.student / "items_read-bench.parquet").unlink()
else:
    frame, n_known = known_first(read_stage1_frames(ws, s, pairs=False).items, cut)
    digest, rows = ItemsDigest().update(frame).hexdigest(), frame.height
print(json.dumps({{"rows": rows, "known": n_known, "digest": digest, "growth": peak_rss_bytes() - base,
                  "peak": peak_rss_bytes()}}))
"""


def _run(code: str) -> dict:
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if got.returncode:
        raise SystemExit(got.stderr[-3000:])
    return json.loads(got.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspaces", type=Path, nargs="+")
    parser.add_argument("--window", type=int, default=5000)
    args = parser.parse_args()
    runs = []
    for ws in args.workspaces:
        got = {mode: _run(CHILD.format(ws=str(ws), mode=mode, window=args.window))
               for mode in ("windows", "whole")}
        windowed, whole = got["windows"], got["whole"]
        if (windowed["digest"], windowed["known"]) != (whole["digest"], whole["known"]):
            raise SystemExit(f"{ws}: the windowed read differs from the whole one: {got}")
        runs.append({"workspace": str(ws), "items": whole["rows"], "known_before_cut": whole["known"],
                     **{f"{m}_growth_bytes": got[m]["growth"] for m in got},
                     **{f"{m}_process_peak_bytes": got[m]["peak"] for m in got}})
        print(json.dumps(runs[-1]), flush=True)
    load = os.getloadavg()
    small, large = min(runs, key=lambda r: r["items"]), max(runs, key=lambda r: r["items"])
    mib = 2**20

    def grew(mode: str) -> float:
        return (large[f"{mode}_growth_bytes"] - small[f"{mode}_growth_bytes"]) / mib

    write_result(
        ROOT / "benchmarks" / "results" / "distill_items_memory.json",
        claim="distill reads its items through Feast in windows: the read's peak stays flat in the catalogue",
        machine=machine_summary(f"shared, load average {load[0]:.1f}"),
        figures={"runs": runs, "window": args.window, "load_average": [round(x, 2) for x in load],
                 "windows_growth_mib": round(grew("windows"), 1),
                 "whole_growth_mib": round(grew("whole"), 1)},
        headline=(f"{small['items']:,} -> {large['items']:,} items: the read's peak "
                  f"{grew('windows'):+.0f} MiB in windows of {args.window:,}, {grew('whole'):+.0f} MiB read "
                  f"whole (load {load[0]:.1f})"),
        peer="the same items read whole (read_stage1_frames(pairs=False), distill before windows)",
        ratio=None,
        command="python benchmarks/distill_items_memory.py " + " ".join(
            [*(Path(w).name for w in args.workspaces), "--window", str(args.window)]),
    )


if __name__ == "__main__":
    main()
