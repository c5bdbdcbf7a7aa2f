"""Claim: `rgcd publish` reads and inserts rooms in windows; how its peak grows with the catalogue.

For each number of rooms, the serving tests' world (tests/embeddings/serving_world.py) with that
many rooms (their schedule in the live_schedule mart, their vectors in item_embeddings, Feast
applied and materialized) is built in one process; `publish` then runs in a fresh process whose
peak RSS is reset just before it (rgcd.memory), once with windows of `--window` rooms and once
with one window holding every room (what publish did before it had windows). Feast's
materialization of the new vectors (part of publish) gets the same window
(`features.materialize_slice_rows`). Milvus Lite's server is its own process and is not counted.

    python benchmarks/publish_memory.py --rooms 4000 32000 --window 2000

    python benchmarks/publish_memory.py --rooms 4000 32000 --window 2000 --new-version

With --new-version a second model version is written after the world was materialized, so Feast
materializes its vectors inside publish, as after `rgcd transfer` (results/publish_memory_new_version.json).
Writes benchmarks/results/publish_memory.json. Figures of a shared machine: the load average is
recorded beside them.
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

BUILD = """
import sys
sys.path[:0] = [{tests!r}, {emb!r}]
import serving_world as w
from rgcd.config import Settings
w.ROOMS = [f"live:{{1000 + k}}" for k in range({rooms})]
_interval = w.room_interval
# the world's 40-hour pattern repeated, so that every room has started by now (Feast's view of it)
w.room_interval = lambda item_id: _interval(f"live:{{1000 + (int(item_id.split(':')[1]) - 1000) % 40}}")
ws = w.build(__import__("pathlib").Path({root!r}), Settings())
if {new_version}:  # a second model version after the first was materialized: what a real run's publish loads
    w.write_vectors(ws, "v2", seed=1)
"""

PUBLISH = """
import json, sys
sys.path[:0] = [{tests!r}, {emb!r}]
from rgcd.config import Settings, Workspace
from rgcd.embeddings.publish import publish
from rgcd.memory import peak_rss_bytes, reset_peak_rss, trim_heap
import rgcd.featurestore.store, feast  # imported before the mark: what every publish loads anyway
s = Settings()
s = s.model_copy(update={{"retrieval": s.retrieval.model_copy(update={{"publish_batch_rooms": {window}}}),
                          "features": s.features.model_copy(update={{"materialize_slice_rows": {window}}})}})
trim_heap(); reset_peak_rss(); base = peak_rss_bytes()
report = publish(Workspace({root!r}), s)
print(json.dumps({{"rooms": report.rooms, "growth": peak_rss_bytes() - base, "peak": peak_rss_bytes()}}))
"""


def _run(code: str) -> str:
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if got.returncode:
        raise SystemExit(got.stderr[-3000:])
    return got.stdout.strip().splitlines()[-1] if got.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[4000, 32000])
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--new-version", action="store_true",
                        help="publish a second model version, written after the world was materialized (as "
                             "`rgcd transfer` then `rgcd publish` do): Feast materializes its item vectors "
                             "inside publish. Without: the published version was materialized at build")
    args = parser.parse_args()
    paths = {"tests": str(ROOT / "tests"), "emb": str(ROOT / "tests" / "embeddings")}
    runs = []
    for rooms in args.rooms:
        for window in (args.window, rooms):
            with tempfile.TemporaryDirectory(prefix="publish-memory-") as tmp:
                root = str(Path(tmp) / "ws")
                _run(BUILD.format(rooms=rooms, root=root, new_version=args.new_version, **paths))
                got = json.loads(_run(PUBLISH.format(window=window, root=root, **paths)))
            runs.append({"rooms": rooms, "window": window, "published": got["rooms"],
                         "new_version": args.new_version,
                         "peak_growth_bytes": got["growth"], "process_peak_bytes": got["peak"]})
            print(json.dumps(runs[-1]), flush=True)
    load = os.getloadavg()
    small, large = min(args.rooms), max(args.rooms)

    def growth(rooms: int, window: int) -> int:
        return next(r["peak_growth_bytes"] for r in runs if r["rooms"] == rooms and r["window"] == window)

    windowed = growth(large, args.window) - growth(small, args.window)
    whole = growth(large, large) - growth(small, small)
    mib = 2**20
    write_result(
        ROOT / "benchmarks" / "results" / ("publish_memory_new_version.json" if args.new_version
                                           else "publish_memory.json"),
        claim=("publish reads and inserts rooms in windows: how its peak grows with the catalogue"
               + (", publishing a version Feast has not materialized yet" if args.new_version else "")),
        machine=machine_summary(f"shared, load average {load[0]:.1f}"),
        figures={"runs": runs, "window": args.window, "load_average": [round(x, 2) for x in load],
                 "windowed_growth_mib": round(windowed / mib, 1),
                 "one_window_growth_mib": round(whole / mib, 1),
                 "note": "see docs/operations.md, Memory: what still grows is not isolated"},
        headline=(f"{small:,} -> {large:,} rooms: publish's peak +{windowed / mib:.0f} MiB in windows of "
                  f"{args.window:,}, +{whole / mib:.0f} MiB with every room in one window "
                  f"(load {load[0]:.1f})"),
        peer="the same publish with one window holding every room (publish before windows)",
        ratio=None,
        command=f"python benchmarks/publish_memory.py --rooms {' '.join(map(str, args.rooms))} "
                f"--window {args.window}" + (" --new-version" if args.new_version else ""),
    )


if __name__ == "__main__":
    main()
