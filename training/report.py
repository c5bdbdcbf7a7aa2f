"""The evaluation report: metrics.json, report.md, PNG plots, and the terminal table.

metrics.json (one seed or many; with many, `protocols` holds the mean over seeds):

    {"run": str, "created": ISO time, "seeds": [int], "ks": [int],
     "protocols": {"<protocol>": {"<model>": {"<slice>": {"<metric>@<K>": mean}}}},
     "std":       {same shape: sample std over seeds (ddof=1); null with one seed},
     "per_seed":  {"<seed>": same shape as protocols},
     "cases":     {"<protocol>": {"<slice>": number of test cases}},
     "strongest": {"<protocol>": {"<slice>": {"metric", "model", "value", "runner_up",
                                              "runner_up_value", "within_noise"}}},
     "timing_s":  {"total": s, "fit": {"<protocol>": {"<model>": mean s}}, "eval": {...}},
     "notes":     {"<protocol>": {data-quality counts}},
     "skipped":   {"<protocol>": why it has no test cases (e.g. 10-core leaves none)},
     "oracle_share": {"<protocol>": {"<model>": {"<slice>": {"HR@10": model / oracle, "NDCG@10": ...}}}}
                  (only on a synthetic world with its latent truth; the oracle is an upper bound,
                   not a model, and never "strongest"),
     "intervals": {"<protocol>": {"<slice>": {"baseline": the strongest baseline on that slice,
                   "chosen_on": where it was chosen, "models": {"<model>": {"NDCG@10" | "HR@10":
                   {"delta", "lo", "hi", "p", "p_holm", "level_holm", "lo_holm", "hi_holm",
                    "significant", "n_cases", "n_seeds"}}}}}}},
     "valid_protocols": {"<protocol>": same shape as protocols, on the validation cases (klm3-cdr)}

`intervals`: each model's mean per-case difference to the slice's strongest baseline (the best
baseline on the validation cases where there are some, else on the test cases), with a paired
bootstrap over test cases and over every seed evaluated (training/intervals.py): `lo`/`hi` the 95%
percentile interval, `p` the bootstrap p-value, `p_holm` Holm-adjusted across the slices of that
model, protocol and metric, `lo_holm`/`hi_holm` the interval at that slice's Holm level, and
`significant` p_holm <= 0.05. The per-case values themselves are in per_case.npz, keyed
"<protocol>|<model>|<seed>|<slice>|<metric>" (what benchmarks/yardstick.py pools over worlds).

A slice with no cases (e.g. no cold-start user) maps each model to {}.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rgcd.atomic import atomic_path, write_json_atomic, write_text_atomic
from rgcd.training.intervals import (
    bootstrap_differences,
    holm,
    holm_levels,
    interval_from,
    percentile_interval,
)
from rgcd.training.model_styles import style_of
from rgcd.training.oracle import NAME as ORACLE
from rgcd.training.oracle import label as oracle_label
from rgcd.training.projection import pca_2d
from rgcd.training.results import PER_CASE_METRICS, SLICES, EvaluationResult

SHARE_METRICS = ("HR@10", "NDCG@10")  # what each model's share of the oracle is reported for

# Columns of the paper-shaped table: per protocol, the metrics its definition names.
HEADLINE = {
    "klm3-cdr": ("Recall@10", "NDCG@10", "Recall@40", "NDCG@40"),
    "live-room": ("HR@10", "NDCG@10", "HR@50", "NDCG@50"),
}
RANK_METRIC = "NDCG@10"  # what "strongest" ranks by; NDCG at the smallest K if 10 is not evaluated
SLICE_TITLE = {"all": "Overall", "cold_start": "Cold-start users", "tail": "Tail items",
               "not_linked": "Not linked", "cold_start_not_linked": "Cold-start, not linked",
               "new_streamer": "New streamers", "off_topic": "Off topic"}
# Where the baseline the intervals compare against is chosen (each slice says which).
CHOSEN_ON_VALID = "validation split"
CHOSEN_ON_TEST = "test split (no validation split: live-room has none; or no validation case in this slice)"
ALPHA = 0.05  # family-wise error of the Holm-corrected intervals




def _stats(result: EvaluationResult) -> tuple[dict, dict, dict]:
    """(mean, std, per_seed) nested as protocol -> model -> slice -> metric."""
    mean: dict = {}
    std: dict = {}
    per_seed: dict = {}
    for p in result.protocols():
        for m in result.models():
            runs = [r for r in result.runs if r.protocol == p and r.model == m]
            if not runs:  # e.g. an ablation left off this protocol (evaluation.ablation_protocols)
                continue
            for s in SLICES:
                names = sorted({k for r in runs for k in r.metrics.get(s, {})})
                vals = {k: np.array([r.metrics[s][k] for r in runs if k in r.metrics.get(s, {})])
                        for k in names}
                mean.setdefault(p, {}).setdefault(m, {})[s] = {k: float(v.mean()) for k, v in vals.items()}
                std.setdefault(p, {}).setdefault(m, {})[s] = {
                    k: (float(v.std(ddof=1)) if len(v) > 1 else None) for k, v in vals.items()}
                for r in runs:
                    seed_runs = per_seed.setdefault(str(r.seed), {}).setdefault(p, {}).setdefault(m, {})
                    seed_runs[s] = r.metrics.get(s, {})
    return mean, std, per_seed


def strongest(mean: dict, std: dict, baselines: set[str], metric: str = RANK_METRIC) -> dict:
    """Per protocol and slice: the baseline with the best mean `metric`, the runner-up, and
    whether their gap is within one std of either (seed noise); computed, never hand-written."""
    out: dict = {}
    for p, models in mean.items():
        for s in SLICES:
            ranked = sorted(((v[s][metric], m) for m, v in models.items()
                             if m in baselines and m != ORACLE and metric in v.get(s, {})), reverse=True)
            if not ranked:
                continue
            best_v, best = ranked[0]
            entry = {"metric": metric, "model": best, "value": best_v, "runner_up": None,
                     "runner_up_value": None, "within_noise": None}
            if len(ranked) > 1:
                second_v, second = ranked[1]
                noise = [std[p][x][s].get(metric) for x in (best, second)]
                entry.update(runner_up=second, runner_up_value=second_v)
                if all(n is not None for n in noise):
                    entry["within_noise"] = bool(best_v - second_v <= max(noise))
            out.setdefault(p, {})[s] = entry
    return out


def strongest_sentences(best: dict) -> list[str]:
    """One sentence per protocol saying which baseline leads on which slice."""
    lines = []
    for p, slices in best.items():
        parts = []
        for s, e in slices.items():
            txt = f"{e['model']} on {s} ({e['metric']} {e['value']:.4f}"
            if e["runner_up"] is not None:
                txt += f" vs {e['runner_up']} {e['runner_up_value']:.4f}"
                if e["within_noise"] is True:
                    txt += ", within seed noise"
                elif e["within_noise"] is None:
                    txt += ", one seed: noise unknown"
            parts.append(txt + ")")
        lines.append(f"On {p}, the strongest baseline is " + "; ".join(parts) + ".")
    return lines


def _case_values(run, slice_name: str, metric: str) -> np.ndarray | None:
    """A run's per-case values of `metric` on a slice; None when it has none (or no run)."""
    return None if run is None else run.per_case.get(slice_name, {}).get(metric)


def valid_means(result: EvaluationResult) -> dict:
    """protocol -> model -> slice -> metric: mean over seeds on the validation cases, for the
    protocols whose runs have them (klm3-cdr)."""
    out: dict = {}
    for r in result.runs:
        for s, metrics in r.valid_metrics.items():
            for k, v in metrics.items():
                by_metric = out.setdefault(r.protocol, {}).setdefault(r.model, {}).setdefault(s, {})
                by_metric.setdefault(k, []).append(v)
    return {p: {m: {s: {k: float(np.mean(v)) for k, v in ks.items()} for s, ks in ss.items()}
                for m, ss in ms.items()} for p, ms in out.items()}


def chosen_baselines(mean: dict, valid: dict, baselines: set[str], metric: str = RANK_METRIC) -> dict:
    """Per protocol and slice, the baseline the intervals compare against: the best mean `metric`
    among baselines (never the oracle) on the validation cases where the slice has them, else on
    the test cases; {"model", "chosen_on"}."""
    out: dict = {}
    for p, models in mean.items():
        for s in SLICES:
            on_test = [m for m, v in models.items()
                       if m in baselines and m != ORACLE and metric in v.get(s, {})]
            on_valid = [m for m in on_test if metric in valid.get(p, {}).get(m, {}).get(s, {})]
            if on_valid and len(on_valid) == len(on_test):
                source, names, where = valid[p], on_valid, CHOSEN_ON_VALID
            else:
                source, names, where = models, on_test, CHOSEN_ON_TEST
            if names:
                best = max(names, key=lambda m, src=source, s=s: (src[m][s][metric], m))
                out.setdefault(p, {})[s] = {"model": best, "chosen_on": where}
    return out


def paired_intervals(result: EvaluationResult, best: dict, n_boot: int = 1000) -> dict:
    """Per protocol and slice, every model's paired bootstrap interval of its difference to the
    slice's chosen baseline (`best`, from `chosen_baselines`), over cases and every seed both were
    run with, Holm-corrected across slices (module doc for the shape). The oracle is neither a
    contender nor compared."""
    out: dict = {}
    for p in result.protocols():
        runs = {(r.model, r.seed): r for r in result.runs if r.protocol == p}
        kept: dict[tuple[str, str], dict[str, tuple]] = {}  # (model, metric) -> slice -> statistics
        for s in SLICES:
            base = best.get(p, {}).get(s, {}).get("model")
            if base is None:
                continue
            stratum: dict[str, np.ndarray] = {}
            for m in result.models():
                if m in (base, ORACLE):
                    continue
                for metric in PER_CASE_METRICS:
                    pairs = [(_case_values(runs.get((m, seed)), s, metric),
                              _case_values(runs.get((base, seed)), s, metric)) for seed in result.seeds]
                    rows = [a - b for a, b in pairs if a is not None and b is not None]
                    if rows:
                        stratum[f"{m}\t{metric}"] = np.stack(rows)
            if not stratum:
                continue
            out.setdefault(p, {})[s] = {"baseline": base, "chosen_on": best[p][s]["chosen_on"], "models": {}}
            for key, (stats, observed) in bootstrap_differences([stratum], n_boot, seed=0).items():
                m, metric = key.split("\t")
                kept.setdefault((m, metric), {})[s] = (stats, observed, *stratum[key].shape[::-1])
        for (m, metric), by_slice in kept.items():
            slices = list(by_slice)
            found = {s: interval_from(by_slice[s][0], by_slice[s][1], by_slice[s][2], by_slice[s][3])
                     for s in slices}
            p_holm = holm([found[s].p for s in slices])
            levels = holm_levels([found[s].p for s in slices], ALPHA)
            for s, ph, level in zip(slices, p_holm, levels, strict=True):
                iv = found[s]
                lo_h, hi_h = percentile_interval(by_slice[s][0], level)
                out[p][s]["models"].setdefault(m, {})[metric] = {
                    "delta": iv.delta, "lo": iv.lo, "hi": iv.hi, "p": iv.p, "p_holm": ph,
                    "level_holm": level, "lo_holm": lo_h, "hi_holm": hi_h, "significant": ph <= ALPHA,
                    "n_cases": iv.n_cases, "n_seeds": iv.n_seeds}
    return out


def interval_table(intervals: dict, metric: str) -> str:
    """Rows = models, columns = slices (each naming its baseline): Δmetric [Holm interval], * where
    significant after Holm."""
    slices = [s for s in SLICES if s in intervals]
    models = list(dict.fromkeys(m for s in slices for m in intervals[s]["models"]))
    head = ["model"] + [f"{SLICE_TITLE[s]} (vs {intervals[s]['baseline']}, chosen on "
                        f"{intervals[s]['chosen_on'].split(' (')[0]})" for s in slices]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        cells = [m]
        for s in slices:
            e = intervals[s]["models"].get(m, {}).get(metric)
            cells.append("–" if e is None else f"{e['delta']:+.4f} [{e['lo_holm']:+.4f}, {e['hi_holm']:+.4f}]"
                         + (" *" if e["significant"] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_per_case(result: EvaluationResult, path: Path) -> None:
    """Every run's per-case values, keyed "<protocol>|<model>|<seed>|<slice>|<metric>" (npz)."""
    arrays = {f"{r.protocol}|{r.model}|{r.seed}|{s}|{metric}": values for r in result.runs
              for s, by_metric in r.per_case.items() for metric, values in by_metric.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def oracle_shares(mean: dict) -> dict:
    """protocol -> model -> slice -> {HR@10, NDCG@10}: the model's mean over the oracle's (None
    where the oracle scored 0). Empty when no oracle was evaluated (real data)."""
    out: dict = {}
    for p, models in mean.items():
        if ORACLE not in models:
            continue
        for m, slices in models.items():
            if m == ORACLE:
                continue
            for s in SLICES:
                top = models[ORACLE].get(s, {})
                out.setdefault(p, {}).setdefault(m, {})[s] = {
                    k: (slices[s][k] / top[k] if top.get(k) and k in slices.get(s, {}) else None)
                    for k in SHARE_METRICS}
    return out


def share_table(shares: dict) -> str:
    """Rows = models, columns = slice x (HR@10, NDCG@10) share of the oracle, as percentages."""
    head = ["model"] + [f"{SLICE_TITLE[s]} {k}" for s in SLICES for k in SHARE_METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, slices in shares.items():
        cells = [m] + ["–" if slices[s].get(k) is None else f"{slices[s][k]:.0%}"
                       for s in SLICES for k in SHARE_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v: float | None, s: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.4f}" if s is None else f"{v:.4f} ± {s:.4f}"


# The paper's slices, then the ones where only transferred content can help: a table each, so
# neither is 28 columns wide.
SLICE_GROUPS = (SLICES[:3], SLICES[3:])
# The terminal's tables: at most three slices each, so mean±std cells fit 80 columns.
TERMINAL_GROUPS = (SLICES[:3], SLICES[3:5], SLICES[5:])


def markdown_table(protocol: str, mean: dict, std: dict, ks: Sequence[int],
                   slices: Sequence[str] = SLICE_GROUPS[0]) -> str:
    """Rows = models, columns = slice x headline metric (the paper's table shape); best in bold."""
    metrics = [m for m in HEADLINE[protocol] if int(m.split("@")[1]) in ks]
    if not metrics:  # none of the headline Ks evaluated: the protocol's metrics at every K
        primary = HEADLINE[protocol][0].split("@")[0]
        metrics = [f"{name}@{k}" for k in ks for name in (primary, "NDCG")]
    models = [x for x in mean[protocol] if x != ORACLE] + [x for x in mean[protocol] if x == ORACLE]
    head = ["model"] + [f"{SLICE_TITLE[s]} {m}" for s in slices for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # the best *model* is bold; the oracle is an upper bound, not a contender
    best = {(s, m): max((mean[protocol][x][s].get(m, -1.0) for x in models if x != ORACLE), default=None)
            for s in slices for m in metrics}
    for x in models:
        cells = [oracle_label(protocol) if x == ORACLE else x]
        for s in slices:
            for m in metrics:
                v = mean[protocol][x][s].get(m)
                cell = _fmt(v, std[protocol][x][s].get(m))
                cells.append(f"**{cell}**" if v is not None and v == best[(s, m)] else cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _slice_axes(plt, n: int, width: float = 3.6, height: float = 3.2):
    """A grid of n panels, at most four a row; returns (figure, the n axes, unused axes hidden)."""
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 2.2, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_beside(fig, axes) -> None:
    """One legend beside the panels (so it never hides a curve), from the panel with the most entries."""
    with_lines = [ax for ax in axes if ax.get_legend_handles_labels()[0]]
    if with_lines:
        handles, labels = max((ax.get_legend_handles_labels() for ax in with_lines), key=lambda x: len(x[1]))
        fig.legend(handles, labels, loc="center right", fontsize=8)


def _save(fig, path: Path, plt) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _plot_hr_curves(result: EvaluationResult, mean: dict, std: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for p in result.protocols():
        fig, axes = _slice_axes(plt, len(SLICES))
        for ax, s in zip(axes, SLICES, strict=True):
            for m in result.models():
                vals = mean[p].get(m, {}).get(s)
                if not vals:
                    continue
                y = [vals[f"HR@{k}"] for k in result.ks]
                e = [std[p][m][s].get(f"HR@{k}") or 0.0 for k in result.ks]
                ax.errorbar(result.ks, y, yerr=e, capsize=3, markersize=5, **style_of(m),
                            label=f"{ORACLE} (upper bound)" if m == ORACLE else m)
            if not ax.lines:
                ax.text(0.5, 0.5, "no test cases in this slice", ha="center", va="center",
                        transform=ax.transAxes, color="grey")
            ax.set_title(f"{SLICE_TITLE[s]} (n={result.cases.get(p, {}).get(s, 0)})", fontsize=9)
            ax.set_xlabel("K")
            ax.set_ylabel("HR@K")
            ax.set_xticks(result.ks)
            ax.grid(alpha=0.3)
        _legend_beside(fig, axes)
        fig.suptitle(f"{p}: HR@K per slice (mean, bars ± std over seeds {result.seeds})")
        fig.tight_layout(rect=(0, 0, 0.84, 1))
        paths.append(_save(fig, out / f"hr_at_k_{p}.png", plt))
    return paths


def _plot_intervals(result: EvaluationResult, intervals: dict, out: Path) -> list[Path]:
    """Per protocol, ΔNDCG@10 and ΔHR@10 against each slice's strongest baseline: the point and
    its Holm-level paired bootstrap interval, one colour and marker per model (training/model_styles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for p, by_slice in intervals.items():
        slices = [s for s in SLICES if s in by_slice]
        compared = {m for s in slices for m in by_slice[s]["models"]}
        models = [m for m in result.models() if m in compared]  # the report's order, in every slice
        if not models:
            continue
        size = (1.6 * len(slices) + 4.5, 3.2 * len(PER_CASE_METRICS))
        fig, axes = plt.subplots(len(PER_CASE_METRICS), 1, figsize=size, squeeze=False)
        width = 0.8 / len(models)
        for ax, metric in zip(axes[:, 0], PER_CASE_METRICS, strict=True):
            for j, m in enumerate(models):
                xs, ys, lo, hi = [], [], [], []
                for i, s in enumerate(slices):
                    e = by_slice[s]["models"].get(m, {}).get(metric)
                    if e is not None:
                        xs.append(i - 0.4 + width * (j + 0.5))
                        ys.append(e["delta"])
                        lo.append(e["delta"] - e["lo_holm"])
                        hi.append(e["hi_holm"] - e["delta"])
                if xs:
                    st = style_of(m)
                    ax.errorbar(xs, ys, yerr=[lo, hi], color=st["color"], marker=st["marker"],
                                linestyle="none", capsize=2, markersize=5, label=m)
            ax.axhline(0.0, color="black", linewidth=0.8)
            ax.set_xticks(range(len(slices)))
            ax.set_xticklabels([f"{SLICE_TITLE[s]}\nvs {by_slice[s]['baseline']}" for s in slices],
                               fontsize=7)
            ax.set_ylabel(f"Δ{metric}")
            ax.grid(alpha=0.3, axis="y")
        _legend_beside(fig, list(axes[:, 0]))
        fig.suptitle(f"{p}: difference to the strongest baseline per slice "
                     f"(paired bootstrap, Holm-level intervals, seeds {result.seeds})", fontsize=10)
        fig.tight_layout(rect=(0, 0, 0.82, 1))
        paths.append(_save(fig, out / f"intervals_{p}.png", plt))
    return paths


def _plot_projection(result: EvaluationResult, out: Path, max_points: int = 3000) -> Path | None:
    if not result.item_vectors:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    names = list(result.item_vectors)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        ids, vecs = result.item_vectors[name]
        domain = np.array(["short video" if i.startswith("photo:") else "live" for i in ids])
        keep = np.concatenate([rng.permutation(np.flatnonzero(domain == d))[:max_points]
                               for d in ("short video", "live")])
        coords, ratio = pca_2d(vecs[keep].astype(np.float64))
        for d, colour in (("short video", "tab:blue"), ("live", "tab:orange")):
            sel = domain[keep] == d
            ax.scatter(coords[sel, 0], coords[sel, 1], s=4, alpha=0.5, c=colour,
                       label=f"{d} ({int((domain == d).sum())})")
        ax.set_title(f"{name}: item vectors, PCA ({ratio[0]:.0%}, {ratio[1]:.0%} of variance)", fontsize=9)
        ax.legend(markerscale=3, fontsize=8)
    fig.tight_layout()
    path = out / "item_projection.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_report(result: EvaluationResult, reports_dir: Path) -> Path:
    """Write metrics.json, report.md and the plots under `reports_dir/<run>/`; returns that folder."""
    out = Path(reports_dir) / result.run
    out.mkdir(parents=True, exist_ok=True)
    mean, std, per_seed = _stats(result)
    rank_metric = RANK_METRIC if 10 in result.ks else f"NDCG@{min(result.ks)}"
    best = strongest(mean, std, result.baselines, rank_metric)
    timing: dict = {"total": round(result.wall_s, 2), "fit": {}, "eval": {}}
    for r in result.runs:
        for key, val in (("fit", r.fit_s), ("eval", r.eval_s)):
            timing[key].setdefault(r.protocol, {}).setdefault(r.model, []).append(val)
    for key in ("fit", "eval"):
        timing[key] = {p: {m: round(float(np.mean(v)), 2) for m, v in ms.items()}
                       for p, ms in timing[key].items()}
    shares = oracle_shares(mean)
    valid = valid_means(result)
    intervals = paired_intervals(result, chosen_baselines(mean, valid, result.baselines, rank_metric),
                                 result.bootstrap_samples)
    doc = {"run": result.run, "created": datetime.now(UTC).isoformat(timespec="seconds"),
           "seeds": result.seeds, "ks": result.ks, "protocols": mean, "std": std, "per_seed": per_seed,
           "cases": result.cases, "strongest": best, "valid_protocols": valid,
           "intervals": intervals, "timing_s": timing, "notes": result.notes, "skipped": result.skipped}
    if shares:
        doc["oracle_share"] = shares
    write_json_atomic(doc, out / "metrics.json")
    write_per_case(result, out / "per_case.npz")

    plots = _plot_hr_curves(result, mean, std, out)
    interval_plots = _plot_intervals(result, intervals, out)
    projection = _plot_projection(result, out)
    if projection is not None:
        plots.append(projection)

    md = [f"# Evaluation report: {result.run}", "",
          f"Seeds {result.seeds} (mean ± sample std over seeds where there are several), "
          f"full-sort ranking, K = {result.ks}. Wall time {result.wall_s:.1f} s. "
          "Nothing was tuned on the test split: budgets are fixed in the configuration.", ""]
    md += strongest_sentences(best) + [""]
    md += [f"Protocol {p} was skipped: {why}." for p, why in result.skipped.items()]
    md += [""] if result.skipped else []
    for p in result.protocols():
        md += [f"## {p}", "", "Cases: " + ", ".join(f"{s} {n}" for s, n in result.cases.get(p, {}).items())
               + (f"; notes: {result.notes[p]}" if result.notes.get(p) else ""), "",
               markdown_table(p, mean, std, result.ks), "",
               "Where only transferred content can help (a case keeps only such positives):", "",
               markdown_table(p, mean, std, result.ks, SLICE_GROUPS[1]), "",
               f"![HR@K {p}](hr_at_k_{p}.png)", ""]
        if p in intervals:
            md += [f"### {p}: difference to the strongest baseline", "",
                   "Each model's mean per-case difference to the slice's strongest baseline (chosen on the "
                   "validation split where the protocol and slice have one, else on the test split: each "
                   "column names it), with its paired bootstrap interval over test cases and seeds "
                   f"{result.seeds} ({result.bootstrap_samples} resamples), at the slice's Holm level across "
                   f"slices (family-wise {ALPHA:.0%}); * = the difference holds after Holm's correction. "
                   "Here the seeds vary the evaluation's own fits (retrievers and baselines) only; "
                   "`benchmarks/yardstick.py` varies the student's and stage 2's seeds and the world too.",
                   ""]
            for metric in PER_CASE_METRICS:
                md += [f"Δ{metric}:", "", interval_table(intervals[p], metric), ""]
            if (out / f"intervals_{p}.png") in interval_plots:
                md += [f"![intervals {p}](intervals_{p}.png)", ""]
    if shares:
        md += ["## Share of the oracle", "",
               f"The `{ORACLE}` row is an upper bound that only a synthetic world has: it ranks by the "
               "demo generator's own probability that this user engages this item at this time "
               "(training/oracle.py). It is not a model. Each model's mean metric divided by the "
               "oracle's:", ""]
        for p in shares:
            md += [f"### {p}", "", share_table(shares[p]), ""]
    if projection is not None:
        md += ["## Item vectors", "", "2-D PCA of the learned item vectors, coloured by domain "
               f"(fit of seed {result.seeds[0]} on {result.protocols()[0]}).", "",
               "![item projection](item_projection.png)", ""]
    md += ["All metrics at every K, per seed, and timings: `metrics.json`."]
    write_text_atomic("\n".join(md) + "\n", out / "report.md")
    return out


def rich_tables(metrics_json: dict) -> list:
    """One rich Table per protocol from a metrics.json document (what `rgcd run` ends with).

    Rows are (model, metric) for the protocol's two @10 headline metrics, columns are slices;
    cells are mean±std over seeds, narrow enough for an 80-column terminal.
    """
    from rich import box
    from rich.table import Table

    tables = []
    for p, models in metrics_json["protocols"].items():
        metrics = list(HEADLINE.get(p, ("NDCG@10",))[:2])
        for group in TERMINAL_GROUPS:
            table = Table(title=f"{p}: mean±std over seeds {metrics_json['seeds']}", box=box.SIMPLE_HEAD,
                          caption="every metric and K, intervals: report.md, metrics.json")
            table.add_column("model", no_wrap=True)
            table.add_column("metric", no_wrap=True)
            for s in group:
                n = metrics_json.get("cases", {}).get(p, {}).get(s)
                table.add_column(s.replace("_", " ") + (f"\nn={n}" if n is not None else ""), justify="right")
            for model, slices in models.items():
                for i, m in enumerate(metrics):
                    row = [(f"{ORACLE} (upper bound)" if model == ORACLE else model) if i == 0 else "", m]
                    for s in group:
                        v = slices[s].get(m)
                        sd = metrics_json["std"][p][model][s].get(m)
                        row.append("–" if v is None else f"{v:.4f}" + ("" if sd is None else f"±{sd:.4f}"))
                    table.add_row(*row, end_section=i == len(metrics) - 1)
            tables.append(table)
    return tables


def one_line(metrics_json: dict, out: Path) -> str:
    """The evaluation's one line of figures: its size, the strongest live-room model, where it went."""
    doc = metrics_json
    best = doc["strongest"].get("live-room", {}).get("all", {})
    lead = f"; strongest on live-room/all: {best['model']} NDCG@10 {best['value']:.4f}" if best else ""
    top = doc["protocols"].get("live-room", {}).get(ORACLE, {}).get("all", {}).get("NDCG@10")
    lead += f" (oracle upper bound {top:.4f})" if top is not None and best else ""
    skipped = f"; skipped {', '.join(doc['skipped'])} (see report.md)" if doc["skipped"] else ""
    return (f"{len(doc['protocols'])} protocols x {len(next(iter(doc['protocols'].values())))} models x "
            f"{len(doc['seeds'])} seeds{lead}{skipped} -> {out}")
