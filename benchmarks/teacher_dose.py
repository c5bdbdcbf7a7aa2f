"""Claim: how rgcd's gain grows with what its teacher knows (the paper's premise as a dose-response).

The `world` teacher (a simulated teacher for synthetic worlds only, NOT an LLM) answers from the
generator's latent truth with accuracy p. For each p in the list (`chance` = 1 / the number of
topics: it names the true topic no more often than a guess), one workspace runs the stages that
depend on the teacher (reason, distill, transfer, evaluate) on the same world (built once: demo
data, ingest, dbt, Feast), so every p is ranked on the same test cases. The live-room protocol
evaluates rgcd, rgcd-no-reasoning and the baselines that were strongest in run J
(creator_link_popularity, uniembed, popularity) with `--seeds` evaluation seeds.

From each run's per-case values (`reports/<run>/per_case.npz`), per p and slice (cold-start,
cold-start ∩ not-linked, all) and metric (HR@10, NDCG@10):
- every model's mean;
- rgcd − rgcd-no-reasoning and rgcd − the strongest baseline (the best mean NDCG@10 of the slice
  among the baselines, chosen on the test split: live-room has no validation split), each with
  its paired bootstrap 95% interval over test cases and seeds (training/intervals.py) and the
  relative gain (difference / the other model's mean).

    python benchmarks/teacher_dose.py --users 4000 --seeds 0 1 2            # ~1 h on 2 busy cores
    python benchmarks/teacher_dose.py --users 20000 --seeds 0 1 2           # the demo size
    python benchmarks/teacher_dose.py --aggregate-only --work /tmp/teacher_dose

Writes benchmarks/results/teacher_dose.json (`python benchmarks/table.py` puts it in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_format import write_result  # noqa: E402

PROTOCOL = "live-room"
BASELINES = ("creator_link_popularity", "uniembed", "popularity")
FULL = ("rgcd", "rgcd-no-reasoning")
SLICES = ("cold_start", "cold_start_not_linked", "all")
METRICS = ("HR@10", "NDCG@10")
DATA_STAGES = "demo-data,ingest,build,features"
TEACHER_STAGES = "features,reason,distill,transfer,evaluate"  # features: a copied workspace's Feast


def chance() -> float:
    """The world teacher's accuracy that names the true topic no more often than a uniform guess."""
    from rgcd.transforms.demo import TOPICS

    return 1.0 / len(TOPICS)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=4000, help="demo world users (the demo: 20000)")
    ap.add_argument("--days", type=int, default=None, help="demo world days (default: the config's)")
    ap.add_argument("--p", nargs="+", default=["chance", "0.7", "0.9"], help="teacher accuracies")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="evaluation seeds")
    ap.add_argument("--work", type=Path, default=Path("/tmp/teacher_dose"), help="workspaces go here")
    ap.add_argument("--aggregate-only", action="store_true", help="re-read the runs in --work")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a setting for every workspace (YAML value), e.g. student.steps=300")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "teacher_dose.json")
    return ap.parse_args(argv)


def accuracy_of(label: str) -> float:
    return chance() if label == "chance" else float(label)


def base_doc(args: argparse.Namespace) -> dict:
    doc: dict = {"demo": {"users": args.users}}
    if args.days is not None:
        doc["demo"]["days"] = args.days
    for item in args.overrides:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        doc.setdefault(section, {})[name] = yaml.safe_load(value)
    return doc


def dose_doc(args: argparse.Namespace, label: str) -> dict:
    """rgcd.yaml of one p: the world teacher at p, live-room only, the models compared."""
    from rgcd.config import Settings

    doc = base_doc(args)
    doc.setdefault("teacher", {}).update(backend="world", world_accuracy=round(accuracy_of(label), 6))
    doc.setdefault("evaluation", {}).update({"protocols": [PROTOCOL], "ablation_protocols": [PROTOCOL],
                         "models": list(BASELINES), "full_method": list(FULL), "seeds": list(args.seeds)})
    Settings.model_validate(doc)
    return doc


def _rgcd(ws: Path, stages: str, log: Path) -> int:
    with open(log, "a") as out:
        return subprocess.call([sys.executable, "-m", "rgcd.cli", "--workspace", str(ws), "run",
                                "--stages", stages], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def report_of(ws: Path) -> Path | None:
    runs = sorted((p for p in (ws / "reports").glob("*") if (p / "per_case.npz").exists()),
                  key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def run_all(args: argparse.Namespace) -> list[dict]:
    """The world once, then one copy of it per p running the teacher's stages; a finished p is kept."""
    base = args.work / "base"
    runs = []
    if not (base / "BUILT").exists():
        base.mkdir(parents=True, exist_ok=True)
        (base / "rgcd.yaml").write_text(yaml.safe_dump(base_doc(args)))
        started = time.perf_counter()
        code = _rgcd(base, DATA_STAGES, base / "dose-run.log")
        if code:
            raise SystemExit(f"building the world failed (exit {code}): see {base / 'dose-run.log'}")
        (base / "BUILT").write_text(f"{time.perf_counter() - started:.1f}\n")
    for label in args.p:
        ws = args.work / f"p-{label}"
        if report_of(ws) is None:
            if ws.exists():
                shutil.rmtree(ws)
            shutil.copytree(base, ws, symlinks=True)
            (ws / "rgcd.yaml").write_text(yaml.safe_dump(dose_doc(args, label)))
            started = time.perf_counter()
            code = _rgcd(ws, TEACHER_STAGES, ws / "dose-run.log")
            print(f"p={label}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
        runs.append({"p": label, "accuracy": round(accuracy_of(label), 4), "workspace": str(ws),
                     "report": str(report_of(ws)) if report_of(ws) else None})
    return runs


# ---- aggregating ----------------------------------------------------------------------------------

def read_per_case(report: Path) -> dict[tuple[str, int, str, str], np.ndarray]:
    """{(model, seed, slice, metric): per-case values} of the live-room protocol."""
    out = {}
    with np.load(report / "per_case.npz") as z:
        for key in z.files:
            protocol, model, seed, slice_name, metric = key.split("|")
            if protocol == PROTOCOL:
                out[(model, int(seed), slice_name, metric)] = z[key]
    return out


def compare(values: dict, model: str, other: str, seeds: Sequence[int], slice_name: str, metric: str,
            n_boot: int) -> dict | None:
    from rgcd.training.intervals import interval

    rows = [values[(model, s, slice_name, metric)] - values[(other, s, slice_name, metric)] for s in seeds
            if (model, s, slice_name, metric) in values and (other, s, slice_name, metric) in values]
    if not rows or not len(rows[0]):
        return None
    iv = interval([np.stack(rows)], n_boot=n_boot)
    base = float(np.mean([values[(other, s, slice_name, metric)].mean() for s in seeds]))
    return {"vs": other, "delta": round(iv.delta, 5), "lo": round(iv.lo, 5), "hi": round(iv.hi, 5),
            "relative": round(iv.delta / base, 4) if base else None,
            "beyond_interval": bool(iv.lo > 0 or iv.hi < 0), "n_cases": iv.n_cases, "n_seeds": iv.n_seeds}


def aggregate(runs: list[dict], seeds: Sequence[int], n_boot: int) -> dict:
    out: dict = {}
    for run in runs:
        if run["report"] is None:
            out[run["p"]] = {"accuracy": run["accuracy"], "missing": "no report (see the run's log)"}
            continue
        values = read_per_case(Path(run["report"]))
        entry: dict = {"accuracy": run["accuracy"], "slices": {}}
        for s in SLICES:
            means = {m: {k: round(float(np.mean([values[(m, sd, s, k)].mean() for sd in seeds
                                                  if (m, sd, s, k) in values])), 5) for k in METRICS}
                     for m in (*FULL, *BASELINES) if any((m, sd, s, METRICS[0]) in values for sd in seeds)}
            strongest = max((m for m in BASELINES if m in means), key=lambda m: means[m]["NDCG@10"])
            cases = next(len(values[(m, sd, s, METRICS[0])]) for m in means for sd in seeds
                         if (m, sd, s, METRICS[0]) in values)
            entry["slices"][s] = {
                "cases": cases, "means": means, "strongest_baseline": strongest,
                "vs_no_reasoning": {k: compare(values, "rgcd", "rgcd-no-reasoning", seeds, s, k, n_boot)
                                    for k in METRICS},
                "vs_strongest": {k: compare(values, "rgcd", strongest, seeds, s, k, n_boot) for k in METRICS}}
        out[run["p"]] = entry
    return out


def _fmt(c: dict | None) -> str:
    if c is None:
        return "n/a"
    rel = f" ({c['relative']:+.0%})" if c["relative"] is not None else ""
    return f"{c['delta']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}]{rel}"


def headline(agg: dict) -> str:
    parts = []
    for label, e in agg.items():
        if "slices" not in e:
            continue
        cs = e["slices"]["cold_start"]
        parts.append(f"p={label}: cold-start HR@10 rgcd − {cs['strongest_baseline']} "
                     f"{_fmt(cs['vs_strongest']['HR@10'])}, "
                     f"− no-reasoning {_fmt(cs['vs_no_reasoning']['HR@10'])}")
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.aggregate_only:
        runs = []
        for label in args.p:
            ws = args.work / f"p-{label}"
            report = report_of(ws)
            runs.append({"p": label, "accuracy": round(accuracy_of(label), 4), "workspace": str(ws),
                         "report": str(report) if report else None})
    else:
        runs = run_all(args)
    agg = aggregate(runs, args.seeds, args.n_boot)
    (args.work / "teacher_dose.json").write_text(json.dumps(agg, indent=2))
    size = (f"{args.users} users" + (f", {args.days} days" if args.days else "")
            + (f" ({', '.join(args.overrides)})" if args.overrides else ""))
    doc = write_result(
        args.out,
        claim=("rgcd's gain over rgcd-no-reasoning and over the strongest baseline as the `world` teacher's "
               f"accuracy p grows (simulated teacher, synthetic world only, not an LLM; {size}; live-room; "
               f"evaluation seeds {list(args.seeds)}; paired bootstrap 95% intervals; strongest baseline "
               "chosen on the test split)"),
        figures={"size": size, "seeds": list(args.seeds), "chance": round(chance(), 4), "doses": agg,
                 "runs": runs},
        headline=headline(agg), peer="rgcd-no-reasoning and the strongest baseline at each p",
        ratio="see figures.doses[p].slices[slice].vs_* .relative")
    print(json.dumps(doc["figures"]["headline"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
