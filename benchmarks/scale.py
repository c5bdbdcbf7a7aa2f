"""Claim: at KuaiLive-M3's per-user density the pipeline runs in bounded memory, and how it grows.

For each number of users, a fresh workspace whose rgcd.yaml asks for the demo world at the real
dataset's density (`DemoDensity.kuailive_m3()`: about 240 plays and 76 live sessions per user-day,
300 videos and 300 rooms per user, 21 days) runs `rgcd run` in its own process. Recorded per
stage: wall time and peak RSS (the figures `rgcd run` prints on each stage's line), and per run:
the process's peak RSS (wait4), the DuckDB memory limit, rows of every mart, what the pair rule
dropped, and the pairs each stage used. `--fit` fits each figure to a power of the number of
users (least squares on log-log) and extrapolates to the full dataset's 21,900 users.

    python benchmarks/scale.py --users 250 1000            # measure (adds to results/scale.json)
    python benchmarks/scale.py --users 4000 --until build   # only demo-data, ingest, build
    python benchmarks/scale.py --users 1000 --start features # go on in that workspace, stage by stage
    python benchmarks/scale.py --fit                        # fit + extrapolate what is there

Writes benchmarks/results/scale.json (--survival: scale_pair_rule_survival.json). The machine
it ran on is named there; the figures of a shared machine vary (say so next to them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from results_format import write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
SURVIVAL = ROOT / "benchmarks" / "results" / "scale_pair_rule_survival.json"
FULL_USERS = 21_900
DAYS = 21
# "✓ build      <figures> (12.3s, peak 1.23 GiB)" as rgcd run prints it (rgcd/cli/)
STAGE_LINE = re.compile(r"^✓ (\S+)\s+(.*) \(([\d.]+)s, peak ([\d.]+) (GiB|MiB)\)\s*$")
UNITS = {"GiB": 1024**3, "MiB": 1024**2}
# With --until / --start: the stages as separate commands (the demo world from the workspace's
# config); a stage of two commands (features: apply, materialize) peaks at the larger of the two.
STAGE_COMMANDS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("demo-data", (("demo-data", "{ws}/demo_data"),)), ("ingest", (("ingest", "{ws}/demo_data"),)),
    ("build", (("build",),)), ("features", (("features", "apply"), ("features", "materialize"))),
    ("reason", (("reason",),)), ("distill", (("distill",),)), ("transfer", (("transfer",),)),
    ("publish", (("publish",),)), ("evaluate", (("evaluate",),)))
STAGE_NAMES = [s for s, _ in STAGE_COMMANDS]


def workspace_config(users: int, seeds: list[int], memory_limit_gb: float) -> dict:
    """rgcd.yaml of one measured workspace: the real density, defaults elsewhere but the seeds."""
    from rgcd.config import DemoDensity

    return {
        "demo": {"users": users, "days": DAYS, "seed": 7, "density": DemoDensity.kuailive_m3().model_dump()},
        "warehouse": {"memory_limit_gb": memory_limit_gb},
        "evaluation": {"seeds": seeds},
    }


def run_measured(cmd: list[str], env: dict[str, str], log: Path) -> tuple[int, float, int]:
    """Run `cmd`, stderr+stdout to `log`; (exit code, wall seconds, peak RSS bytes of the child)."""
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - started, usage.ru_maxrss * 1024


def parse_stage_lines(text: str) -> dict[str, dict]:
    """Each finished stage's wall, peak and line, from `rgcd run`'s output."""
    stages = {}
    joined: list[str] = []
    for raw in text.splitlines():  # rich wraps a long line: join it up to its "(..s, peak ..)" end
        if raw.startswith("✓ ") or (joined and not STAGE_LINE.match(joined[-1])
                                    and not joined[-1].startswith(("─", "["))):
            if raw.startswith("✓ ") or not joined:
                joined.append(raw.rstrip())
            else:
                joined[-1] += " " + raw.strip()
    for raw in joined:
        m = STAGE_LINE.match(raw.strip())
        if m:
            name, line, wall, peak, unit = m.groups()
            stages[name] = {"wall_s": float(wall), "peak_rss_bytes": int(float(peak) * UNITS[unit]),
                            "line": line}
    return stages


def mart_rows(ws: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {p.stem: pq.read_metadata(p).num_rows for p in sorted((ws / "marts").glob("*.parquet"))}


def pair_figures(ws: Path) -> dict:
    """What the pair rule dropped (the effect mart's totals) and the pairs each stage used."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out: dict = {}
    effect = ws / "marts" / "behaviour_pair_rule_effect.parquet"
    if effect.exists():
        table = pq.read_table(effect)
        out["rule"] = {c: int(pc.sum(table[c]).as_py() or 0) for c in table.column_names if c != "event_date"}
    pairs = ws / "marts" / "behaviour_pairs.parquet"
    if pairs.exists():
        out["behaviour_pairs"] = pq.read_metadata(pairs).num_rows
    reason = ws / "reports" / "reason.json"
    if reason.exists():
        r = json.loads(reason.read_text())
        out["reason"] = {"available": r.get("pairs_available"), "selected": r.get("pairs_selected")}
    for name in ("transfer.json",):  # stage 2's report, once it writes one
        path = ws / "reports" / name
        if path.exists():
            out["transfer"] = json.loads(path.read_text()).get("pairs")
    return out


def measure(users: int, root: Path, seeds: list[int], memory_limit_gb: float,
            until: str | None, start: str | None = None) -> dict:
    """One world of `users`: `rgcd run` in one process, or (with until/start) stage by stage.

    With `start`, the workspace of an earlier run is kept and the stages from `start` on run in
    it; the stages recorded for that size before `start` are kept in the result.
    """
    import yaml

    from rgcd.config import Settings, Workspace
    from rgcd.memory import duckdb_limits

    ws = root / f"scale-{users}"
    if start is None:
        if ws.exists():
            import shutil

            shutil.rmtree(ws)
        ws.mkdir(parents=True)
        config = workspace_config(users, seeds, memory_limit_gb)
        (ws / "rgcd.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    elif not (ws / "rgcd.yaml").exists():
        raise SystemExit(f"--start {start}: no earlier run in {ws}")
    config = yaml.safe_load((ws / "rgcd.yaml").read_text())
    limits = duckdb_limits(Workspace(ws), Settings.model_validate(config))
    env = {**os.environ, "COLUMNS": "400", "PYTHONPATH": str(ROOT)}  # no wrapped stage lines
    rgcd = [str(Path(sys.executable).parent / "rgcd"), "-w", str(ws)]
    log = ws / "run.log"
    if until is None and start is None:  # the whole pipeline in one process, as a user runs it
        print(f"[scale] {users} users: rgcd run (log {log})", file=sys.stderr)
        code, wall, peak = run_measured([*rgcd, "run"], env, log)
        return run_result(users, ws, code, wall, peak, parse_stage_lines(log.read_text()),
                          limits.memory_limit)
    first = STAGE_NAMES.index(start) if start else 0
    last = STAGE_NAMES.index(until) if until else len(STAGE_NAMES) - 1
    earlier = stored_stages(users) if start else {}
    parsed = {k: v for k, v in earlier.items() if STAGE_NAMES.index(k) < first} if start else {}
    code, wall, peak = 0, 0.0, 0
    for stage, commands in STAGE_COMMANDS[first:last + 1]:
        seconds, stage_peak, lines = 0.0, 0, []
        for args in commands:
            print(f"[scale] {users} users: rgcd {' '.join(args)} (log {log})", file=sys.stderr)
            stage_log = ws / f"run-{stage}.log"
            code, took, used = run_measured([*rgcd, *[a.format(ws=ws) for a in args]], env, stage_log)
            text = stage_log.read_text()
            with log.open("a") as whole:
                whole.write(text)
            seconds, stage_peak = seconds + took, max(stage_peak, used)
            lines += [x for x in text.strip().splitlines() if x.startswith("✓")][-1:]
            if code != 0:
                break
        parsed[stage] = {"wall_s": round(seconds, 1), "peak_rss_bytes": stage_peak,
                         "line": " | ".join(lines)}
        wall, peak = wall + seconds, max(peak, stage_peak)
        store_run({"runs": []}, run_result(users, ws, None if stage != STAGE_NAMES[last] else code,
                                          wall, peak, parsed, limits.memory_limit))
        if code != 0:
            break
    return run_result(users, ws, code, wall, peak, parsed, limits.memory_limit)


def stored_stages(users: int) -> dict:
    """The stages results/scale.json holds for this size (from an earlier run)."""
    if not RESULTS.exists():
        return {}
    runs = [r for r in _stored(RESULTS).get("runs", []) if r["users"] == users]
    return runs[0]["stages"] if runs else {}


def run_result(users: int, ws: Path, code: int | None, wall: float | None, peak: int | None,
               parsed: dict, memory_limit: int) -> dict:
    """One run's record; code None = recorded from the log of a run still going (--from-log)."""
    result = {
        "users": users, "days": DAYS, "exit_code": code, "wall_s": None if wall is None else round(wall, 1),
        "process_peak_rss_bytes": peak, "duckdb_memory_limit_bytes": memory_limit,
        "stages": parsed, "marts": mart_rows(ws), "pairs": pair_figures(ws),
        "over_limit": [s for s, v in parsed.items() if v["peak_rss_bytes"] > memory_limit],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_end": os.getloadavg()[0],
    }
    if code is None:
        result["unfinished"] = "recorded from the log while the run was still going: later stages missing"
    elif code != 0:
        result["log_tail"] = (ws / "run.log").read_text()[-3000:]
    return result


def record_from_log(users: int, ws: Path) -> dict:
    """The finished stages of a run that is still going (or was stopped), from its log."""
    import yaml

    from rgcd.config import Settings, Workspace
    from rgcd.memory import duckdb_limits

    settings = Settings.model_validate(yaml.safe_load((ws / "rgcd.yaml").read_text()))
    parsed = parse_stage_lines((ws / "run.log").read_text())
    limit = duckdb_limits(Workspace(ws), settings).memory_limit
    return run_result(users, ws, None, None, None, parsed, limit)


# The rule switched off: caps no user-day reaches, no floor.
RULE_OFF = {"pair_plays_per_user_day": 10**6, "pair_sessions_per_user_day": 10**6,
            "pair_max_per_user_day": 10**9, "pair_min_strength": 0.0}


def stage1_selection(ws: Path, max_pairs: int, max_per_item: int) -> list[str]:
    """The pair ids stage 1 (reason) would select from this workspace's marts, with its own code
    (select_pairs over the whole marts read directly; Feast returns the same rows)."""
    import polars as pl

    from rgcd.training.frames import Stage1Frames
    from rgcd.training.reasoning.run import select_pairs

    pairs = pl.read_parquet(ws / "marts" / "behaviour_pairs.parquet")
    items = pl.read_parquet(ws / "marts" / "item_content.parquet").drop("mm_embedding")
    frames = Stage1Frames(pairs=pairs.with_columns(pl.col("last_seen").alias("event_timestamp")),
                          items=items, request_time=datetime.now(UTC))
    chosen, _ = select_pairs(frames, max_pairs, 0.0, max_per_item)
    return [p.pair_id for p in chosen]


def rule_survival(users: int, root: Path) -> dict:
    """Build one real-density world with the pair rule and without it; of the pairs stage 1 takes
    without the rule, how many the rule keeps, and how many stage 1 still takes with it."""
    import shutil

    import yaml

    from rgcd.config import Settings

    teacher = Settings().teacher
    base = root / f"survival-{users}"
    shutil.rmtree(base, ignore_errors=True)
    out: dict = {"users": users, "max_pairs": teacher.max_pairs,
                 "max_pairs_per_item": teacher.max_pairs_per_item}
    env = {**os.environ, "COLUMNS": "400", "PYTHONPATH": str(ROOT)}
    rgcd = str(Path(sys.executable).parent / "rgcd")
    for name, warehouse in (("rule", {}), ("no_rule", RULE_OFF)):
        ws = base / name
        ws.mkdir(parents=True)
        config = workspace_config(users, [0], 0.0)
        config["warehouse"].update(warehouse)
        (ws / "rgcd.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        log = ws / "run.log"
        for args in (["demo-data", f"{ws}/demo_data"], ["ingest", f"{ws}/demo_data"], ["build"]):
            code, seconds, peak = run_measured([rgcd, "-w", str(ws), *args], env, log)
            if code != 0:
                raise SystemExit(f"{args[0]} failed for {ws}: see {log}")
        out[name] = {"build_wall_s": round(seconds, 1), "build_peak_rss_bytes": peak,
                     "behaviour_pairs": mart_rows(ws)["behaviour_pairs"]}
    out.update(compare_selections(base, teacher.max_pairs, teacher.max_pairs_per_item))
    return out


def compare_selections(base: Path, max_pairs: int, max_per_item: int) -> dict:
    """Stage 1's selection from the marts built with (base/rule) and without (base/no_rule) the rule."""
    import polars as pl

    columns = ["pair_id", "strength", "distinct_users"]
    marts = {n: pl.read_parquet(base / n / "marts" / "behaviour_pairs.parquet", columns=columns)
             for n in ("rule", "no_rule")}
    chosen = {n: marts[n].filter(pl.col("pair_id").is_in(stage1_selection(base / n, max_pairs, max_per_item)))
              for n in marts}
    out: dict = {f"stage1_strength_{n}": {"min": chosen[n]["strength"].min(),
                                          "mean": chosen[n]["strength"].mean()} for n in marts}
    kept = marts["rule"].select("pair_id")
    without = chosen["no_rule"]
    out["stage1_pairs_without_rule_kept_by_rule"] = without.join(kept, on="pair_id").height / without.height
    out["stage1_pairs_without_rule_still_selected"] = (without.join(chosen["rule"], on="pair_id").height
                                                       / without.height)
    multi = marts["no_rule"].filter(pl.col("distinct_users") >= 2)
    out["pairs_of_2plus_users_without_rule"] = multi.height
    out["pairs_of_2plus_users_without_rule_kept"] = multi.join(kept, on="pair_id").height
    out["pairs_of_2plus_users_without_rule_mean_strength"] = multi["strength"].mean()
    return out


def power_fit(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """(a, b) of y = a x^b, least squares on logs; None without two positive points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y and y > 0]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    b = sum((p[0] - mx) * (p[1] - my) for p in pts) / sum((p[0] - mx) ** 2 for p in pts)
    return math.exp(my - b * mx), b


def fit(runs: list[dict]) -> dict:
    """Each figure as a power of users, extrapolated to FULL_USERS."""
    ok = sorted((r for r in runs if r.get("stages")), key=lambda r: r["users"])
    series: dict[str, list[tuple[int, float]]] = {}
    for r in ok:
        for stage, v in r["stages"].items():
            series.setdefault(f"{stage}.wall_s", []).append((r["users"], v["wall_s"]))
            series.setdefault(f"{stage}.peak_rss_bytes", []).append((r["users"], v["peak_rss_bytes"]))
        for mart, n in r["marts"].items():
            series.setdefault(f"rows.{mart}", []).append((r["users"], n))
        for k, n in r["pairs"].get("rule", {}).items():
            series.setdefault(f"pair_rule.{k}", []).append((r["users"], n))
    out = {}
    for name, pts in series.items():
        got = power_fit([p[0] for p in pts], [p[1] for p in pts])
        if got:
            a, b = got
            out[name] = {"exponent": round(b, 3), "at_full": a * FULL_USERS**b,
                         "points": pts}
    return out


def markdown(doc: dict) -> str:
    """Markdown tables: per size, each stage's wall and peak; then the fit."""
    runs = sorted(doc["runs"], key=lambda r: r["users"])
    stages = [s for r in runs for s in r["stages"]]
    stages = list(dict.fromkeys(stages))
    head = "| stage | " + " | ".join(f"{r['users']:,} users" for r in runs) + " |"
    lines = [head, "| --- |" + " --- |" * len(runs)]
    for stage in stages:
        cells = []
        for r in runs:
            v = r["stages"].get(stage)
            cells.append(f"{v['wall_s']:.0f} s, {v['peak_rss_bytes'] / 1024**3:.2f} GiB" if v else "-")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    marts = list(dict.fromkeys(m for r in runs for m in r["marts"]))
    for mart in marts:
        lines.append(f"| rows: {mart} | " + " | ".join(f"{r['marts'].get(mart, 0):,}" for r in runs) + " |")
    fitted = doc.get("fit", {}).get("figures", {})
    if fitted:
        lines += ["", f"| figure | exponent b (a x users^b) | at {FULL_USERS:,} users |",
                  "| --- | --- | --- |"]
        for name, f in fitted.items():
            value = f["at_full"]
            shown = (f"{value / 1024**3:.1f} GiB" if name.endswith("peak_rss_bytes")
                     else f"{value / 60:.0f} min" if name.endswith("wall_s") else f"{value:,.0f}")
            lines.append(f"| {name} | {f['exponent']} | {shown} |")
    return "\n".join(lines)


def store_run(doc: dict, result: dict) -> None:
    """Add one run to results/scale.json, re-read first: runs of other sizes may have been
    measured by another process meanwhile."""
    if RESULTS.exists():
        doc["runs"] = _stored(RESULTS).get("runs", [])
    doc["runs"] = [r for r in doc["runs"] if r["users"] != result["users"]] + [result]
    doc["runs"].sort(key=lambda r: r["users"])
    doc.setdefault("machine_detail", machine_detail())  # a stage's record written before main's doc
    save_scale(doc)


def _stored(path: Path) -> dict:
    """The figures a results file holds (without the table's headline); {} before the first run."""
    if not path.exists():
        return {}
    return {k: v for k, v in json.loads(path.read_text())["figures"].items() if k != "headline"}


def machine_detail() -> dict:
    """Cores, platform and RAM of this machine."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "ram_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}


def _machine(detail: dict, load: str) -> str:
    return f"{detail['cpus']} cores, {detail['ram_bytes'] / 2**30:.1f} GiB RAM, {load}"


def save_scale(doc: dict) -> None:
    """Write results/scale.json; its headline is the largest run: its largest process against the limit."""
    top = max(doc["runs"], key=lambda r: r["users"])
    stage, peak = max(((s, v["peak_rss_bytes"]) for s, v in top["stages"].items()), key=lambda x: x[1])
    at = top["stages"]
    shown = ", ".join(f"{s} {at[s]['wall_s']:,.0f} s / {at[s]['peak_rss_bytes'] / 2**30:.2f} GiB"
                      for s in ("build", "features", "distill") if s in at)
    limit = top["duckdb_memory_limit_bytes"]
    write_result(
        RESULTS, figures=doc, command="python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        claim=(f"every stage runs at KuaiLive-M3's per-user density ({top['users']:,} users, "
               f"{top['days']} days) under the DuckDB memory limit"),
        headline=f"{top['users']:,} users: largest process {peak / 2**30:.2f} GiB ({stage}), {shown}",
        peer=f"the DuckDB memory limit, {limit / 2**30:.2f} GiB",
        ratio=f"{peak / limit:.2f}x the limit (largest process)",
        machine=_machine(doc["machine_detail"], f"load {top.get('load_average_at_end', 0):.1f} at the end"))


def save_survival(survival: dict, machine: dict) -> None:
    """Write results/scale_pair_rule_survival.json: the build with the pair rule against without it."""
    rule, none = survival["rule"], survival["no_rule"]
    write_result(
        SURVIVAL, figures={**survival, "machine_detail": machine},
        command="python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        claim="the pair rule bounds behaviour_pairs at the real density and keeps stage 1's pairs strong",
        headline=(f"{survival['users']} users at the real density, with the rule: "
                  f"{rule['behaviour_pairs']:,} pairs, build {rule['build_wall_s']:.0f} s, "
                  f"{rule['build_peak_rss_bytes'] / 2**30:.2f} GiB; "
                  f"stage 1's pairs min strength {survival['stage1_strength_rule']['min']:.2f}"),
        peer=(f"the same build without the rule: {none['behaviour_pairs']:,} pairs, "
              f"{none['build_wall_s']:.0f} s, {none['build_peak_rss_bytes'] / 2**30:.2f} GiB; min strength "
              f"{survival['stage1_strength_no_rule']['min']:.2f}"),
        ratio=(f"{rule['behaviour_pairs'] / none['behaviour_pairs']:.3f}x pairs, "
               f"{rule['build_wall_s'] / none['build_wall_s']:.2f}x time, "
               f"{rule['build_peak_rss_bytes'] / none['build_peak_rss_bytes']:.2f}x memory"),
        machine=_machine(machine, f"load {os.getloadavg()[0]:.1f} at the end"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="*", default=[])
    parser.add_argument("--root", type=Path, default=Path("/tmp/scale-bench"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="evaluation seeds (default: one, to keep a run short)")
    parser.add_argument("--memory-limit-gb", type=float, default=0.0,
                        help="warehouse.memory_limit_gb of the runs (0: the default share of RAM)")
    parser.add_argument("--until", choices=STAGE_NAMES, default=None,
                        help="run only the stages up to this one, each in its own process")
    parser.add_argument("--start", choices=STAGE_NAMES, default=None,
                        help="continue an earlier run's workspace from this stage, each stage in "
                             "its own process (the stages before it keep their recorded figures)")
    parser.add_argument("--fit", action="store_true", help="fit and extrapolate the stored runs")
    parser.add_argument("--from-log", type=int, default=None, metavar="USERS",
                        help="record the finished stages of <root>/scale-USERS from its run.log")
    parser.add_argument("--compare-only", action="store_true",
                        help="with --survival: compare the workspaces an earlier --survival built")
    parser.add_argument("--survival", type=int, default=None, metavar="USERS",
                        help="build a world of USERS with and without the pair rule and compare "
                             "the pairs stage 1 selects")
    args = parser.parse_args()

    doc = _stored(RESULTS) or {"runs": []}
    doc["machine_detail"] = machine_detail()
    for users in args.users:
        result = measure(users, args.root, args.seeds, args.memory_limit_gb, args.until, args.start)
        store_run(doc, result)
        print(json.dumps({k: result[k] for k in ("users", "exit_code", "wall_s", "process_peak_rss_bytes",
                                                 "over_limit")}), file=sys.stderr)
    if args.from_log:
        store_run(doc, record_from_log(args.from_log, args.root / f"scale-{args.from_log}"))
    if args.survival:
        survival = (rule_survival(args.survival, args.root) if not args.compare_only else
                    {"users": args.survival, **_stored(SURVIVAL),
                     **compare_selections(args.root / f"survival-{args.survival}", 2000, 3)})
        survival.pop("machine_detail", None)
        save_survival(survival, doc["machine_detail"])
        print(json.dumps(survival, indent=2), file=sys.stderr)
    if args.fit or not (args.users or args.survival or args.from_log):
        doc["fit"] = {"assumption": (f"each figure is a * users^b (least squares on log-log over the "
                                     f"measured sizes), users at the same per-user density and 21 days; "
                                     f"extrapolated to {FULL_USERS:,} users"),
                      # runs of different days may come from different code: the fit is then rough
                      "runs_measured_at": {r["users"]: r.get("measured_at") for r in doc["runs"]},
                      "figures": fit(doc["runs"])}
        save_scale(doc)
        print(markdown(doc))


if __name__ == "__main__":
    main()
