"""Claim: the demo world generates in time linear in users at KuaiLive-M3's real density.

Runs `rgcd demo-data OUT --users N --days 21 --kuailive-density --no-measure` in a fresh process per
size (the real per-user density: ~240 plays and ~76 live sessions per user-day, 300 videos and 300
rooms per user) and records wall seconds, peak RSS and rows; `per_user_s` should stay flat.
Before the vectorised sampler (transforms/latent.py: LiveChoice.sample) the same command took
133 s at 250 users and 681 s at 1,000 (benchmarks/results/scale.json), and 4,000 had not finished
after 65 minutes.

    python benchmarks/demo_generator.py 250 1000 4000   # -> benchmarks/results/demo_generator.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_format import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OLD = {"250": 132.6, "1000": 681.0}  # seconds, the same command before (scale.json's demo-data stage)


def run(users: int, folder: Path) -> dict:
    cmd = [str(Path(sys.executable).parent / "rgcd"), "demo-data", str(folder / f"demo-{users}"),
           "--users", str(users), "--days", "21", "--kuailive-density", "--no-measure"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    line = " ".join((done.stdout + done.stderr).split())
    found = re.findall(r"([\d,]+) (plays|live sessions|photos|live rooms)", line)
    rows = {k: int(v.replace(",", "")) for v, k in found}
    seconds = re.search(r"([\d.]+)s(,| ->)", line)
    return {"users": users, "wall_s": round(wall, 1), "per_user_s": round(wall / users, 4),
            "generate_s": float(seconds.group(1)) if seconds else None,
            "peak_rss_bytes_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
            "rows": rows, "line": line, "before_s": OLD.get(str(users))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("users", type=int, nargs="+")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo_generator.json")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="demo-generator-") as tmp:
        for n in args.users:
            runs.append(run(n, Path(tmp)))
            print(json.dumps(runs[-1]), flush=True)
            subprocess.run(["rm", "-rf", str(Path(tmp) / f"demo-{n}")], check=True)
    first, last = runs[0], runs[-1]
    write_result(args.out, claim="the demo world at KuaiLive-M3's density generates in time linear in users",
                 headline=headline(runs), figures={"runs": runs},
                 peer="the same command before the vectorised sampler: 133 s at 250 users, 681 s at 1,000",
                 ratio=(f"{last['per_user_s'] / first['per_user_s']:.2f}x seconds per user, "
                        f"{last['users']:,} vs {first['users']:,} users") if len(runs) > 1 else None,
                 machine=f"{platform.machine()}, shared 2 cores, 24 GB")


def headline(runs: list[dict]) -> str:
    """Wall seconds per size, and seconds per user at the largest."""
    walls = " / ".join(f"{r['wall_s']:.0f}" for r in runs)
    sizes = " / ".join(f"{r['users']:,}" for r in runs)
    return f"{walls} s at {sizes} users ({runs[-1]['per_user_s']:.2f} s per user at the largest)"


if __name__ == "__main__":
    main()
