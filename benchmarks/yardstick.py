"""Claim: which model wins each slice, and by how much beyond the noise of worlds and of every learned seed.

For each world seed W and each seed S, a fresh workspace runs the whole pipeline (`rgcd run`) on
the demo world of that seed, with every learned part seeded by S: the student (student.seed), stage
2 (transfer.seed) and the evaluation's fits, the retriever and the baselines (evaluation.seeds =
[S]). One workspace per (W, S) so no stage resumes another seed's checkpoint; the marts of one
world are the same for every S (the demo world is a function of W), so its test cases pair up.

Then, from each run's per-case values (`reports/<run>/per_case.npz`), per protocol and slice:
- the strongest baseline: the best mean NDCG@10 over worlds and seeds among the baselines (never
  the oracle nor the full method), chosen on the test split (no validation split is evaluated:
  said in the result);
- every model's mean NDCG@10 / HR@10 and its difference to that baseline with a paired bootstrap
  interval over test cases and seeds, worlds as strata (training/intervals.py), Holm-corrected
  across slices.

    python benchmarks/yardstick.py --users 20000 --world-seeds 7 8 9 --seeds 0 1 2   # hours
    python benchmarks/yardstick.py --preset smoke --world-seeds 3 --seeds 0            # minutes
    python benchmarks/yardstick.py --aggregate-only --work /tmp/yardstick             # re-read runs
    ... --set transfer.steps=300 --set evaluation.contrastive_samples=524288          # overrides

Writes benchmarks/results/yardstick.json (the common format: claim, command, commit, machine,
figures, peer, ratio) and benchmarks/results/yardstick.md (the table the README cites).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METRICS = ("NDCG@10", "HR@10")
RANK_METRIC = "NDCG@10"
ALPHA = 0.05
CHOSEN_ON_VALID = "validation split"
CHOSEN_ON_TEST = "test split (no validation split: live-room has none; or no validation case in this slice)"
# The settings tests/test_pipeline.py runs the whole pipeline with: the smallest world that works
# end to end (klm3-cdr's 10-core leaves no test case at this size; live-room has them).
PRESETS: dict[str, dict] = {
    "smoke": {"demo": {"users": 400, "days": 6},
              "student": {"steps": 40, "max_train_items": 300, "eval_items": 40},
              "transfer": {"steps": 40, "batch_size": 128, "checkpoint_every": 20},
              "evaluation": {"mf_samples": 2**15, "contrastive_samples": 2**14, "text_max_items": 200}},
}


# ---- arguments ------------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[list[str], object]:
    """'section.key=value' -> (['section', 'key'], value parsed as YAML: 3, 0.1, true, [0, 1], text)."""
    key, sep, value = text.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if not sep or len(path) < 2:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected section.key=value, "
                                         "e.g. transfer.steps=300")
    return path, yaml.safe_load(value)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; refuses what cannot run (no seeds, repeated seeds, no users)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=None,
                    help="demo world users (default: the preset's or 20,000)")
    ap.add_argument("--days", type=int, default=None, help="demo world days (default: the preset's or 14)")
    ap.add_argument("--world-seeds", type=int, nargs="+", default=[7, 8, 9], help="demo.seed of each world")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="seeds of everything learned: student, stage 2, retriever and baselines")
    ap.add_argument("--set", dest="overrides", type=parse_override, action="append", default=[],
                    metavar="SECTION.KEY=VALUE", help="a configuration override (repeatable)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None,
                    help="smoke: the smallest world that runs end to end (tests/test_pipeline.py's)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rgcd-yardstick"),
                    help="folder of the workspaces, one per (world seed, seed)")
    ap.add_argument("--aggregate-only", action="store_true", help="read the runs under --work, run nothing")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--out", type=Path, default=RESULTS / "yardstick.json")
    args = ap.parse_args(argv)
    for name in ("world_seeds", "seeds"):
        values = getattr(args, name)
        if len(set(values)) != len(values):
            ap.error(f"--{name.replace('_', '-')} repeats a value: {values}")
    for name in ("users", "days"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            ap.error(f"--{name} must be positive")
    if args.n_boot < 100:
        ap.error("--n-boot must be at least 100")
    return args


def _merge(into: dict, path: Sequence[str], value: object) -> None:
    for key in path[:-1]:
        into = into.setdefault(key, {})
    into[path[-1]] = value


def settings_doc(args: argparse.Namespace, world_seed: int, seed: int) -> dict:
    """The rgcd.yaml of the (world seed, seed) workspace: preset, then size, seeds, overrides.
    Validated against the settings, so a typo stops the benchmark before anything runs."""
    from rgcd.config import Settings

    doc: dict = json.loads(json.dumps(PRESETS.get(args.preset or "", {})))  # a deep copy
    if args.users is not None:
        _merge(doc, ["demo", "users"], args.users)
    if args.days is not None:
        _merge(doc, ["demo", "days"], args.days)
    for path, value in args.overrides:
        _merge(doc, path, value)
    # the seeds last: they are what the benchmark varies, an override must not fix them
    _merge(doc, ["demo", "seed"], world_seed)
    _merge(doc, ["student", "seed"], seed)
    _merge(doc, ["transfer", "seed"], seed)
    _merge(doc, ["evaluation", "seeds"], [seed])
    Settings.model_validate(doc)
    return doc


# ---- running --------------------------------------------------------------------------------------

def workspace_of(work: Path, world_seed: int, seed: int) -> Path:
    return work / f"world{world_seed}-seed{seed}"


def report_of(ws: Path) -> Path | None:
    """The newest evaluation report folder of a workspace (one per fresh workspace)."""
    runs = sorted((p for p in (ws / "reports").glob("*") if (p / "per_case.npz").exists()),
                  key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def run_one(work: Path, world_seed: int, seed: int, doc: dict) -> dict:
    """`rgcd run` in a fresh workspace; its wall time, exit code and report folder."""
    ws = workspace_of(work, world_seed, seed)
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "rgcd.yaml").write_text(yaml.safe_dump(doc, sort_keys=True))
    log = ws / "yardstick-run.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call([sys.executable, "-m", "rgcd.cli", "--workspace", str(ws), "run"],
                               stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - started
    report = report_of(ws)
    return {"world_seed": world_seed, "seed": seed, "workspace": str(ws), "exit_code": code,
            "wall_s": round(wall, 1), "report": str(report) if report else None, "log": str(log)}


# ---- aggregating ----------------------------------------------------------------------------------

def read_per_case(report: Path) -> dict[tuple[str, str, str, str], np.ndarray]:
    """{(protocol, model, slice, metric): per-case values} of a one-seed report (per_case.npz)."""
    out = {}
    with np.load(report / "per_case.npz") as z:
        for key in z.files:
            protocol, model, _seed, slice_name, metric = key.split("|")
            out[(protocol, model, slice_name, metric)] = z[key]
    return out


def read_valid_means(report: Path) -> dict[tuple[str, str], dict[str, float]]:
    """{(protocol, slice): {model: mean NDCG@10 on the validation cases}} from a report's
    metrics.json (valid_protocols; klm3-cdr only), empty when it has none."""
    path = report / "metrics.json"
    if not path.exists():
        return {}
    return _regroup(json.loads(path.read_text()).get("valid_protocols", {}))


def _regroup(valid: dict) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    for p, models in valid.items():
        for m, slices in models.items():
            for s, v in slices.items():
                if RANK_METRIC in v:
                    out.setdefault((p, s), {})[m] = v[RANK_METRIC]
    return out


def pooled_valid(worlds: dict[int, dict[int, Path]]) -> dict[tuple[str, str], dict[str, float]]:
    """{(protocol, slice): {model: mean over worlds of the mean over seeds of its validation NDCG@10}}
    for the models every run of every world has it for."""
    per_world: dict[tuple[str, str], dict[str, list[float]]] = {}
    for by_seed in worlds.values():
        runs = [read_valid_means(by_seed[s]) for s in sorted(by_seed)]
        for key in set().union(*runs):
            for m in set().union(*(r.get(key, {}) for r in runs)):
                vals = [r.get(key, {}).get(m) for r in runs]
                if all(v is not None for v in vals):
                    per_world.setdefault(key, {}).setdefault(m, []).append(float(np.mean(vals)))
    return {k: {m: float(np.mean(v)) for m, v in models.items() if len(v) == len(worlds)}
            for k, models in per_world.items()}


def aggregate(worlds: dict[int, dict[int, Path]], baselines: set[str], n_boot: int = 2000) -> dict:
    """Means, the strongest baseline and paired intervals per protocol and slice, pooled over
    worlds (strata) and seeds. `worlds`: world seed -> seed -> report folder."""
    from rgcd.training.intervals import (
        bootstrap_differences,
        holm,
        holm_levels,
        interval_from,
        percentile_interval,
    )

    # (protocol, slice) -> model -> metric -> world -> (n_seeds, n_cases)
    values: dict[tuple[str, str], dict[str, dict[str, dict[int, np.ndarray]]]] = {}
    for w, by_seed in worlds.items():
        per_seed = [read_per_case(by_seed[s]) for s in sorted(by_seed)]
        keys = set().union(*per_seed)
        for protocol, model, slice_name, metric in keys:
            rows = [d.get((protocol, model, slice_name, metric)) for d in per_seed]
            if any(r is None for r in rows):
                continue  # a model some seed did not run is left out of this world
            if len({len(r) for r in rows}) != 1:
                raise SystemExit(f"world {w}: {protocol}/{slice_name} has different cases across seeds "
                                 f"({[len(r) for r in rows]}); a world's marts must not depend on the seed")
            values.setdefault((protocol, slice_name), {}).setdefault(model, {}).setdefault(metric, {})[w] = \
                np.stack(rows)

    valid = pooled_valid(worlds)
    from rgcd.training.results import SLICES

    means: dict = {}
    intervals: dict = {}
    kept: dict = {}  # (protocol, model, metric) -> slice -> (stats, observed, n_cases, n_seeds)
    rank = {s: i for i, s in enumerate(SLICES)}
    for (protocol, slice_name), unordered in sorted(values.items(), key=lambda kv: (kv[0][0], rank.get(
            kv[0][1], len(rank)), kv[0][1])):
        models = {m: unordered[m] for m in report_order(list(unordered))}
        pooled = {m: {metric: float(np.mean([a.mean() for a in by_world.values()]))
                      for metric, by_world in by_metric.items()} for m, by_metric in models.items()}
        for m, vals in pooled.items():
            means.setdefault(protocol, {}).setdefault(m, {})[slice_name] = vals
        contenders = [m for m in models if m in baselines and RANK_METRIC in pooled[m]]
        if not contenders:
            continue
        on_valid = valid.get((protocol, slice_name), {})
        if all(m in on_valid for m in contenders):  # chosen where no test case is looked at
            base, chosen_on = max(contenders, key=lambda m: (on_valid[m], m)), CHOSEN_ON_VALID
        else:
            base, chosen_on = max(contenders, key=lambda m: (pooled[m][RANK_METRIC], m)), CHOSEN_ON_TEST
        strata = []
        for w in worlds:
            stratum = {}
            for m, by_metric in models.items():
                if m == base or m == "oracle":
                    continue
                for metric in METRICS:
                    if w in by_metric.get(metric, {}) and w in models[base].get(metric, {}):
                        stratum[f"{m}\t{metric}"] = by_metric[metric][w] - models[base][metric][w]
            strata.append(stratum)
        intervals.setdefault(protocol, {})[slice_name] = {"baseline": base, "chosen_on": chosen_on,
                                                          "models": {}}
        for key, (stats, observed) in bootstrap_differences(strata, n_boot, seed=0).items():
            m, metric = key.split("\t")
            arrays = list(models[m][metric].values())
            kept.setdefault((protocol, m, metric), {})[slice_name] = (
                stats, observed, sum(a.shape[1] for a in arrays), max(a.shape[0] for a in arrays))
    for (protocol, m, metric), by_slice in kept.items():
        slices = list(by_slice)
        found = {s: interval_from(*by_slice[s]) for s in slices}
        for s, p_holm, level in zip(slices, holm([found[s].p for s in slices]),
                                    holm_levels([found[s].p for s in slices], ALPHA), strict=True):
            iv = found[s]
            lo_h, hi_h = percentile_interval(by_slice[s][0], level)
            intervals[protocol][s]["models"].setdefault(m, {})[metric] = {
                "delta": iv.delta, "lo": iv.lo, "hi": iv.hi, "p": iv.p, "p_holm": p_holm, "level_holm": level,
                "lo_holm": lo_h, "hi_holm": hi_h, "significant": p_holm <= ALPHA,
                "n_cases": iv.n_cases, "n_seeds": iv.n_seeds}
    return {"means": means, "intervals": intervals}


def report_order(models: Sequence[str]) -> list[str]:
    """Baselines in the configuration's order, then the full method and its ablations, then
    anything else by name, the oracle last (the order of `rgcd evaluate`'s report)."""
    from rgcd.config import FULL_METHOD
    from rgcd.training.baselines import MODELS

    known = [*MODELS, *FULL_METHOD]
    rest = sorted(m for m in models if m not in known and m != "oracle")
    return [m for m in known if m in models] + rest + (["oracle"] if "oracle" in models else [])


def ratios(agg: dict) -> dict:
    """protocol -> slice -> model -> its pooled mean NDCG@10 over the slice's strongest baseline's."""
    out: dict = {}
    for protocol, by_slice in agg["intervals"].items():
        for s, entry in by_slice.items():
            peer = agg["means"][protocol][entry["baseline"]][s][RANK_METRIC]
            out.setdefault(protocol, {})[s] = {
                m: (round(v[s][RANK_METRIC] / peer, 4) if peer else None)
                for m, v in agg["means"][protocol].items() if s in v and RANK_METRIC in v[s]}
    return out


def markdown(agg: dict, worlds: Sequence[int], seeds: Sequence[int]) -> str:
    """The table the README cites: per protocol, rows = models, columns = slices; each cell the
    pooled mean NDCG@10 and, against the slice's strongest baseline, Δ [Holm-level interval], *
    where the difference holds after Holm's correction."""
    lines = [f"Pooled over world seeds {list(worlds)} x seeds {list(seeds)} (every learned part); "
             "the strongest baseline per slice is chosen on the validation split where there is one "
             "(klm3-cdr), else on the test split (live-room has none); * = the difference to it holds "
             f"after Holm's correction across slices (family-wise {ALPHA:.0%}).", ""]
    for protocol, by_slice in agg["intervals"].items():
        slices = list(by_slice)
        models = list(agg["means"][protocol])
        lines += [f"### {protocol}: NDCG@10", "",
                  "| model | " + " | ".join(f"{s} (vs {by_slice[s]['baseline']})" for s in slices) + " |",
                  "|" + "---|" * (len(slices) + 1)]
        for m in models:
            cells = []
            for s in slices:
                mean = agg["means"][protocol][m].get(s, {}).get(RANK_METRIC)
                e = by_slice[s]["models"].get(m, {}).get(RANK_METRIC)
                cell = "–" if mean is None else f"{mean:.4f}"
                if e is not None:
                    cell += f" ({e['delta']:+.4f} [{e['lo_holm']:+.4f}, {e['hi_holm']:+.4f}]" \
                            + ("*" if e["significant"] else "") + ")"
                elif m == by_slice[s]["baseline"]:
                    cell += " (baseline)"
                cells.append(cell)
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def headline(agg: dict, model: str = "rgcd") -> str:
    """Per protocol and slice of the main three: the winner, `model`'s mean and its difference."""
    parts = []
    for protocol, by_slice in agg["intervals"].items():
        for s in ("all", "cold_start", "cold_start_not_linked"):
            entry = by_slice.get(s)
            if entry is None or model not in entry["models"]:
                continue
            base, mean = entry["baseline"], agg["means"][protocol]
            e = entry["models"][model][RANK_METRIC]
            parts.append(f"{protocol}/{s}: {base} {mean[base][s][RANK_METRIC]:.4f}, {model} "
                         f"{mean[model][s][RANK_METRIC]:.4f} ({e['delta']:+.4f} [{e['lo_holm']:+.4f}, "
                         f"{e['hi_holm']:+.4f}])")
    return f"{RANK_METRIC}, the slice's winner vs {model} (Holm-level 95%): " + "; ".join(parts)


def result_doc(args: argparse.Namespace, agg: dict, runs: list[dict], command: str) -> dict:
    """The common benchmark format (benchmarks/results_format.py) around the aggregate."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_format import check_result, current_commit, machine_summary

    doc = {
        "claim": "per protocol and slice, each model's NDCG@10 / HR@10 against the strongest baseline, "
                 "with paired bootstrap intervals over test cases, every learned seed and world seeds",
        "command": command, "commit": current_commit(),
        "machine": machine_summary(f"{len(runs)} runs, {sum(r.get('wall_s', 0) for r in runs):.0f} s"),
        "figures": {"headline": headline(agg), "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "users": args.users, "days": args.days, "preset": args.preset,
                    "world_seeds": args.world_seeds, "seeds": args.seeds,
                    "overrides": {".".join(p): v for p, v in args.overrides}, "n_boot": args.n_boot,
                    "runs": runs, "means": agg["means"], "intervals": agg["intervals"],
                    "ratio_to_strongest": ratios(agg)},
        "peer": "the strongest baseline of each protocol and slice (figures.intervals.*.baseline)",
        "ratio": "pooled NDCG@10 over the slice's strongest baseline's: figures.ratio_to_strongest",
    }
    return check_result(doc, "yardstick.json")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from rgcd.training.baselines import MODELS

    command = "python benchmarks/yardstick.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    runs = []
    worlds: dict[int, dict[int, Path]] = {}
    for w in args.world_seeds:
        for s in args.seeds:
            if args.aggregate_only:
                report = report_of(workspace_of(args.work, w, s))
                run = {"world_seed": w, "seed": s, "report": str(report) if report else None}
            else:
                doc = settings_doc(args, w, s)
                print(f"world {w} seed {s}: rgcd run in {workspace_of(args.work, w, s)} ...", flush=True)
                run = run_one(args.work, w, s, doc)
                print(f"  exit {run['exit_code']} in {run['wall_s']} s; report {run['report']}", flush=True)
            runs.append(run)
            if run["report"]:
                worlds.setdefault(w, {})[s] = Path(run["report"])
    if not worlds:
        print("no run produced a report (see each workspace's yardstick-run.log)", file=sys.stderr)
        return 1
    agg = aggregate(worlds, set(MODELS), args.n_boot)
    doc = result_doc(args, agg, runs, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    table = args.out.with_suffix(".md")
    table.write_text(markdown(agg, sorted(worlds), args.seeds) + "\n")
    print(f"{len(runs)} runs, {sum(r.get('wall_s', 0) for r in runs):.0f} s -> {args.out}, {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
