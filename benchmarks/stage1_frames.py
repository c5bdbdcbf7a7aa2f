"""Claim: stage 1's read through Feast costs a stated factor over reading the marts' parquet directly.

Stage 1 (training/frames.py) takes behaviour pairs and item content from the feature store: an
entity frame of every pair_id / item_id at one request time, values from `rgcd.featurestore.store.frame`.
Measured side by side on one applied workspace, each run in a fresh process (wall time of the read
and peak RSS of that process):

- `direct`: the former read (the peer): both marts' parquet with polars, latest version per item;
- `feast`: `read_stage1_frames(...)` with `features.offline_store: duckdb`, Feast's stock DuckDB store;
- `asof`: `read_stage1_frames(...)` with the default `features.offline_store: asof`, the ASOF plugin;
- `feast_items`: `read_stage1_frames(..., pairs=False)` (default store), what `rgcd distill` reads.

The frames of `feast` and `asof` are checked equal to `direct` (same ids, same values).

    PYTHONPATH=. python benchmarks/stage1_frames.py WS [--repeats 3]

WS must hold the marts and an applied store (`rgcd -w WS build` / `rgcd -w WS features apply`).
Writes benchmarks/results/stage1_frames.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "stage1_frames.json"
MODES = ("direct", "feast", "asof", "feast_items")


def _peak_mb() -> float:
    # VmHWM is this process's own peak; ru_maxrss would carry the parent's across fork + exec.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(ws_root: str, mode: str, save: str | None) -> None:
    import time

    import polars as pl

    from rgcd.config import Settings, Workspace
    from rgcd.training.frames import read_stage1_frames

    ws = Workspace(Path(ws_root))
    if mode != "direct":  # import Feast before the clock starts: a run imports it once anyway
        import feast  # noqa: F401
    start = time.perf_counter()
    if mode == "direct":
        pairs = pl.read_parquet(ws.marts / "behaviour_pairs.parquet")
        items = pl.read_parquet(ws.marts / "item_content.parquet")
        items = items.sort("created_timestamp").unique("item_id", keep="last", maintain_order=True)
        pairs, items = pairs.sort("pair_id"), items.sort("item_id")
    else:
        store = "duckdb" if mode == "feast" else "asof"
        settings = Settings.model_validate({"features": {"offline_store": store}})
        frames = read_stage1_frames(ws, settings, pairs=mode != "feast_items")
        pairs, items = frames.pairs, frames.items
    seconds = time.perf_counter() - start
    if save:
        pairs.write_parquet(Path(save) / f"{mode}_pairs.parquet")
        items.write_parquet(Path(save) / f"{mode}_items.parquet")
    print(json.dumps({"seconds": seconds, "peak_mb": _peak_mb(), "pairs": pairs.height,
                      "items": items.height}))


def _run(ws: Path, mode: str, save: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(ws)] + (["--save", str(save)] if save else [])
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def _same(save: Path, mode: str) -> bool:
    import polars as pl
    from polars.testing import assert_frame_equal

    for kind in ("pairs", "items"):
        got = pl.read_parquet(save / f"{mode}_{kind}.parquet")
        want = pl.read_parquet(save / f"direct_{kind}.parquet").select(got.columns)
        try:
            assert_frame_equal(got, want, check_dtypes=False)
        except AssertionError:
            return False
    return True


def main() -> None:
    """Run every mode `--repeats` times, interleaved; write the JSON; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ws", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--save")
    args = parser.parse_args()
    if args.child:
        _child(str(args.ws), args.child, args.save)
        return
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for mode in MODES:  # interleaved, so load on the shared machine hits every mode alike
                runs[mode].append(_run(args.ws, mode, Path(tmp) if r == 0 else None))
                print(mode, runs[mode][-1], flush=True)
        same = {m: _same(Path(tmp), m) for m in ("feast", "asof")}
    best = {m: min(x["seconds"] for x in v) for m, v in runs.items()}
    peak = {m: statistics.median(x["peak_mb"] for x in v) for m, v in runs.items()}
    doc = {
        "claim": "stage 1 frames through Feast vs the marts' parquet read directly",
        "command": "PYTHONPATH=. python benchmarks/stage1_frames.py " + " ".join(sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1m_at_end": os.getloadavg()[0]},
        "rows": {"pairs": runs["direct"][0]["pairs"], "items": runs["direct"][0]["items"]},
        "same_frames_as_direct": same,
        "seconds_best": best,
        "peak_mb_median": peak,
        "seconds_all": {m: [round(x["seconds"], 2) for x in v] for m, v in runs.items()},
        "ratio_vs_direct": {m: {"seconds": round(best[m] / best["direct"], 1),
                                "peak_mb": round(peak[m] / peak["direct"], 1)}
                            for m in MODES if m != "direct"},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print("| mode | best s | peak MB (median) | vs direct (time, memory) |")
    for m in MODES:
        ratio = doc["ratio_vs_direct"].get(m)
        rel = f"{ratio['seconds']}x, {ratio['peak_mb']}x" if ratio else "peer"
        print(f"| {m} | {best[m]:.1f} | {peak[m]:.0f} | {rel} |")
    print("same frames as direct:", same)


if __name__ == "__main__":
    main()
