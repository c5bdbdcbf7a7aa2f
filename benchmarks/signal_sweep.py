"""Claim: where each model wins, across levels of multimodal and of text signal in the demo world.

The demo world's channels each carry a share of the latent topic set by a knob (`demo.world`,
docs/demo-world.md). This sweep moves one knob at a time around the demo's default and runs the
whole pipeline on each world (demo-data ... evaluate; publish is skipped, evaluation reads no
published vector):

- multimodal signal: `demo.world.vector_noise` (the per-item noise against a topic amplitude of 1;
  the demo's default 2.4 is the middle level);
- text signal: `demo.world.text_topic_word` (the share of a text's content words from its topic's
  vocabulary, in titles, video texts, live names and comments; the default 0.35 is the middle).

Each level's channels are measured the way `rgcd demo-data` prints them (10-NN topic purity and
probe accuracy, transforms/world_signal.py), and printed beside its results. Per level and slice:
every model's live-room NDCG@10 and HR@10, the strongest model and the strongest baseline, and the
full method's paired bootstrap interval against that baseline (the report's, training/intervals.py,
Holm-corrected across slices). One world seed and one seed per level: a level-to-level trend is
read against those intervals, not as a multi-seed result (benchmarks/yardstick.py is that).

    python benchmarks/signal_sweep.py                               # 2,000 users, 14 days: ~1 h here
    python benchmarks/signal_sweep.py --users 1000 --preset smoke    # a loaded machine: smaller budgets
    python benchmarks/signal_sweep.py --aggregate-only              # re-read the runs, re-plot

Writes benchmarks/results/signal_sweep.json (the common format) and signal_sweep.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_format import write_result  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PROTOCOL = "live-room"
METRICS = ("NDCG@10", "HR@10")
# The knob of each sweep and its levels, strongest signal first; the middle one is the demo's default
# (rgcd/config.py DemoWorld), so both sweeps share that world.
SWEEPS: dict[str, tuple[str, tuple[float, ...]]] = {
    "multimodal": ("vector_noise", (1.2, 2.4, 4.8)),
    "text": ("text_topic_word", (0.6, 0.35, 0.15)),
}
DEFAULTS = {"vector_noise": 2.4, "text_topic_word": 0.35}
# Training budgets below the demo's defaults, for a machine that cannot afford them (said in the result).
BUDGETS: dict[str, dict] = {
    "smoke": {"student": {"steps": 40, "max_train_items": 300, "eval_items": 40},
              "transfer": {"steps": 40, "batch_size": 128, "checkpoint_every": 20},
              "evaluation": {"mf_samples": 2**15, "contrastive_samples": 2**14, "text_max_items": 200}},
}
# The stages that make the numbers (publish writes only what serving reads).
STAGES = "demo-data,ingest,build,features,reason,distill,transfer,evaluate"
# The channels printed beside each level: what each sweep moves.
CHANNELS = {"multimodal": [("vectors", "photo"), ("vectors", "live")],
            "text": [("title", "photo"), ("texts", "photo"), ("live_name", "live"), ("comments", "live")]}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2000, help="demo world users (default 2,000)")
    ap.add_argument("--days", type=int, default=14, help="demo world days (default 14, the demo's)")
    ap.add_argument("--world-seed", type=int, default=7, help="demo.seed of every world (the demo's: 7)")
    ap.add_argument("--seed", type=int, default=0, help="seed of everything learned")
    ap.add_argument("--full-method", default="rgcd",
                    help="comma-separated full-method models evaluated (default rgcd: the ablations "
                         "are the yardstick's, not the sweep's)")
    ap.add_argument("--preset", choices=sorted(BUDGETS), default=None,
                    help="smoke: the training budgets of benchmarks/yardstick.py's smoke preset (student "
                         "40 steps, stage 2 40 steps, small evaluation samples), for a loaded machine; "
                         "the full method is then trained far less than at the demo's defaults")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rgcd-signal-sweep"),
                    help="folder of the workspaces, one per world")
    ap.add_argument("--aggregate-only", action="store_true", help="read the runs under --work, run nothing")
    ap.add_argument("--only", nargs="+", default=None, metavar="WORLD",
                    help="run only these worlds (names as printed; to spread the worlds over processes), "
                         "then aggregate whatever reports --work holds")
    ap.add_argument("--out", type=Path, default=RESULTS / "signal_sweep.json")
    args = ap.parse_args(argv)
    if args.users <= 0 or args.days <= 1:
        ap.error("--users must be positive and --days above 1")
    return args


def worlds() -> list[tuple[str, dict[str, float]]]:
    """(name, knobs) of every world: each sweep's levels with the other knob at its default; the
    default world once."""
    out: dict[str, dict[str, float]] = {}
    for knob, levels in SWEEPS.values():
        for level in levels:
            knobs = {**DEFAULTS, knob: level}
            out.setdefault(world_name(knobs), knobs)
    return list(out.items())


def world_name(knobs: dict[str, float]) -> str:
    return "-".join(f"{k}{v:g}" for k, v in sorted(knobs.items()))


def settings_doc(args: argparse.Namespace, knobs: dict[str, float]) -> dict:
    """The rgcd.yaml of one world's workspace, validated before anything runs."""
    from rgcd.config import Settings

    doc = json.loads(json.dumps(BUDGETS.get(args.preset or "", {})))  # a deep copy
    for section, values in {
            "demo": {"users": args.users, "days": args.days, "seed": args.world_seed, "world": dict(knobs)},
            "student": {"seed": args.seed}, "transfer": {"seed": args.seed},
            "evaluation": {"seeds": [args.seed], "protocols": [PROTOCOL],
                           "full_method": [m for m in args.full_method.split(",") if m]}}.items():
        doc.setdefault(section, {}).update(values)
    Settings.model_validate(doc)
    return doc


def run_world(args: argparse.Namespace, name: str, knobs: dict[str, float]) -> dict:
    """The pipeline on one world in its own workspace; wall time, exit code, load averages."""
    ws = args.work / name
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "rgcd.yaml").write_text(yaml.safe_dump(settings_doc(args, knobs), sort_keys=True))
    load_before = os.getloadavg()
    started = time.perf_counter()
    with open(ws / "sweep-run.log", "w") as log:
        code = subprocess.call([sys.executable, "-m", "rgcd.cli", "--workspace", str(ws), "run",
                                "--stages", STAGES], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = round(time.perf_counter() - started, 1)
    run = {"world": name, "knobs": knobs, "exit_code": code, "wall_s": wall,
           "load_before": [round(x, 1) for x in load_before],
           "load_after": [round(x, 1) for x in os.getloadavg()]}
    (ws / "sweep-run.json").write_text(json.dumps(run) + "\n")  # read back by --aggregate-only
    return run


def run_record(ws: Path, name: str, knobs: dict[str, float]) -> dict | None:
    """A world's run record: the one its sweep process wrote, else (that process was stopped while
    the run went on) the wall time `rgcd run` printed at the end of its log; None if neither."""
    if (ws / "sweep-run.json").exists():
        return json.loads((ws / "sweep-run.json").read_text())
    log = ws / "sweep-run.log"
    found = re.search(r"done in ([0-9.]+)s", log.read_text()) if log.exists() else None
    if found is None:
        return None
    return {"world": name, "knobs": knobs, "wall_s": float(found.group(1)),
            "recorded_from": "the run's own log (the sweep process that started it was stopped)"}


def measured_channels(ws: Path) -> list[dict]:
    """Every channel's measured share of the latent topic in the world's raw files."""
    from rgcd.transforms.world_signal import as_dicts, measure_world

    return as_dicts(measure_world(ws / "demo_data"))


def read_report(ws: Path) -> dict | None:
    """The newest evaluation report's metrics.json of a workspace, or None."""
    runs = sorted((p for p in (ws / "reports").glob("*/metrics.json")), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text()) if runs else None


def summarise(metrics: dict, baselines: set[str]) -> dict:
    """Per slice: every model's NDCG@10 / HR@10, the strongest model (oracle apart), the strongest
    baseline and each model's interval against it from the report."""
    models = metrics["protocols"][PROTOCOL]
    slices = list(next(iter(models.values())))
    out = {}
    for s in slices:
        values = {m: {k: v[s][k] for k in METRICS} for m, v in models.items() if s in v}
        ranked = sorted((m for m in values if m != "oracle"), key=lambda m: -values[m]["NDCG@10"])
        base = [m for m in ranked if m in baselines]
        iv = metrics.get("intervals", {}).get(PROTOCOL, {}).get(s, {})
        out[s] = {"cases": metrics["cases"][PROTOCOL].get(s), "models": values,
                  "strongest": ranked[0] if ranked else None,
                  "strongest_baseline": base[0] if base else None,
                  "interval_baseline": iv.get("baseline"),
                  "intervals": {m: e.get("NDCG@10") for m, e in iv.get("models", {}).items()}}
    return out


def plot(levels: dict[str, list[dict]], path: Path) -> None:
    """One row per sweep, one column per slice: NDCG@10 of every model against the level, each
    model in its own colour and marker (training/model_styles.py), the oracle dashed; the x labels
    carry each level's knob and measured purity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rgcd.training.model_styles import style_of

    first = next(iter(levels.values()))[0]["slices"]
    slices = list(first)
    fig, axes = plt.subplots(len(levels), len(slices), figsize=(3.1 * len(slices), 3.4 * len(levels)),
                             squeeze=False)
    for row, (sweep, points) in enumerate(levels.items()):
        labels = [p["label"] for p in points]
        models = list(dict.fromkeys(m for p in points for s in p["slices"].values() for m in s["models"]))
        for col, s in enumerate(slices):
            ax = axes[row][col]
            for m in models:
                ys = [p["slices"].get(s, {}).get("models", {}).get(m, {}).get("NDCG@10") for p in points]
                if all(y is None for y in ys):
                    continue
                ax.plot(range(len(points)), [float("nan") if y is None else y for y in ys], label=m,
                        markersize=5, linewidth=1.2, **style_of(m))
            ax.set_xticks(range(len(points)), labels, fontsize=6)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"{sweep}: {s}", fontsize=8)
            ax.set_xlabel(f"{SWEEPS[sweep][0]} (10-NN purity of its channels)", fontsize=6)
            if col == 0:
                ax.set_ylabel("live-room NDCG@10", fontsize=8)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(7, len(names)), fontsize=7, frameon=False)
    fig.suptitle("Signal sweep: strongest signal left, weakest right (one world seed, one seed per level)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(levels: dict[str, list[dict]]) -> str:
    """Per sweep, one row per level: the knob, the measured channels (10-NN purity / probe), then
    per slice the strongest model (oracle apart) with its NDCG@10, and the full method's NDCG@10 with
    its difference to the slice's strongest baseline [Holm-level interval], * where it holds."""
    lines = []
    for sweep, points in levels.items():
        knob = SWEEPS[sweep][0]
        slices = list(points[0]["slices"])
        lines += [f"**{sweep} signal** (`demo.world.{knob}`; channels: 10-NN purity / probe)", "",
                  f"| {knob} | channels | " + " | ".join(slices) + " |", "|" + "---|" * (len(slices) + 2)]
        for p in points:
            chans = "; ".join(
                f"{c['channel']} {c['domain']} {c['purity_10nn']:.2f} / {c['probe_accuracy']:.2f}"
                for c in p["channels"] if (c["channel"], c["domain"]) in CHANNELS[sweep])
            cells = []
            for s in slices:
                e = p["slices"][s]
                win = e["strongest"]
                cell = f"{win} {e['models'][win]['NDCG@10']:.4f}"
                full = e["models"].get("rgcd")
                iv = e["intervals"].get("rgcd")
                if full is not None and win != "rgcd":
                    cell += f"; rgcd {full['NDCG@10']:.4f}"
                if iv:
                    cell += (f" ({iv['delta']:+.4f} [{iv['lo_holm']:+.4f}, {iv['hi_holm']:+.4f}]"
                             + ("*" if iv.get("significant") else "") + f" vs {e['interval_baseline']})")
                cells.append(cell)
            lines.append(f"| {p['level']:g} | {chans} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def level_label(sweep: str, knobs: dict[str, float], channels: list[dict]) -> str:
    knob = SWEEPS[sweep][0]
    picked = [c for c in channels if (c["channel"], c["domain"]) in CHANNELS[sweep]]
    purity = "/".join(f"{c['purity_10nn']:.2f}" for c in picked)
    return f"{knobs[knob]:g}\n({purity})"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from rgcd.training.baselines import MODELS

    command = "python benchmarks/signal_sweep.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    runs, by_world = [], {}
    for name, knobs in worlds():
        ws = args.work / name
        if not args.aggregate_only and (args.only is None or name in args.only):
            print(f"{name}: rgcd run in {ws} ...", flush=True)
            run = run_world(args, name, knobs)
            print(f"  exit {run['exit_code']} in {run['wall_s']} s (load {run['load_before']} -> "
                  f"{run['load_after']})", flush=True)
        record = run_record(ws, name, knobs)
        if record is not None:
            runs.append(record)
        metrics = read_report(ws)
        if metrics is None or PROTOCOL not in metrics["protocols"]:
            print(f"  {name}: no report (see {ws / 'sweep-run.log'})", file=sys.stderr)
            continue
        by_world[name] = {"knobs": knobs, "channels": measured_channels(ws),
                          "slices": summarise(metrics, set(MODELS))}
    if not by_world:
        print("no world produced a report", file=sys.stderr)
        return 1
    levels: dict[str, list[dict]] = {}
    for sweep, (knob, values) in SWEEPS.items():
        for v in values:
            name = world_name({**DEFAULTS, knob: v})
            if name in by_world:
                w = by_world[name]
                levels.setdefault(sweep, []).append({"level": v, "world": name,
                                                     "label": level_label(sweep, w["knobs"], w["channels"]),
                                                     **w})
    for sweep, points in levels.items():
        print(f"\n{sweep} sweep ({SWEEPS[sweep][0]}):")
        for p in points:
            picked = ", ".join(f"{c['channel']}/{c['domain']} 10-NN {c['purity_10nn']:.2f} probe "
                               f"{c['probe_accuracy']:.2f}" for c in p["channels"]
                               if (c["channel"], c["domain"]) in CHANNELS[sweep])
            print(f"  {SWEEPS[sweep][0]} {p['level']:g} ({picked})")
            for s, e in p["slices"].items():
                print(f"    {s:<22} strongest {e['strongest']} "
                      f"{e['models'][e['strongest']]['NDCG@10']:.4f}; baseline {e['strongest_baseline']}; "
                      f"rgcd {e['models'].get('rgcd', {}).get('NDCG@10', float('nan')):.4f}")
    png = args.out.with_suffix(".png")
    plot(levels, png)
    wins = {sweep: {str(p["level"]): {s: e["strongest"] for s, e in p["slices"].items()} for p in points}
            for sweep, points in levels.items()}
    write_result(
        args.out, command=command,
        claim="which model is strongest per live-room slice as the demo world's multimodal and text "
              "signal move (one knob at a time), each level's channels measured",
        figures={"users": args.users, "days": args.days, "world_seed": args.world_seed, "seed": args.seed,
                 "preset": args.preset, "budgets": BUDGETS.get(args.preset or "", "the demo's defaults"),
                 "sweeps": {s: {"knob": k, "levels": list(v)} for s, (k, v) in SWEEPS.items()},
                 "runs": runs, "levels": levels, "strongest": wins, "plot": os.path.relpath(png, ROOT)},
        headline="strongest per slice by level: " + "; ".join(
            f"{sweep} {lvl}: all={w.get('all')}" for sweep, by in wins.items() for lvl, w in by.items()),
        peer="the strongest baseline of each level and slice (figures.levels.*.slices.*.strongest_baseline)",
        ratio=None)
    args.out.with_suffix(".md").write_text(markdown(levels) + "\n")
    print(f"\n{len(by_world)} worlds -> {args.out}, {png}, {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
