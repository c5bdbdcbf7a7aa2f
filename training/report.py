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
                   not a model, and never "strongest")}

A slice with no cases (e.g. no cold-start user) maps each model to {}.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rgcd.atomic import atomic_path, write_json_atomic, write_text_atomic
from rgcd.training.oracle import LABEL as ORACLE_LABEL
from rgcd.training.oracle import NAME as ORACLE
from rgcd.training.projection import pca_2d
from rgcd.training.results import SLICES, EvaluationResult

SHARE_METRICS = ("HR@10", "NDCG@10")  # what each model's share of the oracle is reported for

# Columns of the paper-shaped table: per protocol, the metrics its definition names.
HEADLINE = {
    "klm3-cdr": ("Recall@10", "NDCG@10", "Recall@40", "NDCG@40"),
    "live-room": ("HR@10", "NDCG@10", "HR@50", "NDCG@50"),
}
RANK_METRIC = "NDCG@10"  # what "strongest" ranks by; NDCG at the smallest K if 10 is not evaluated
SLICE_TITLE = {"all": "Overall", "cold_start": "Cold-start users", "tail": "Tail items"}




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
                    per_seed.setdefault(str(r.seed), {}).setdefault(p, {}).setdefault(m, {})[s] = r.metrics[s]
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


def markdown_table(protocol: str, mean: dict, std: dict, ks: Sequence[int]) -> str:
    """Rows = models, columns = slice x headline metric (the paper's table shape); best in bold."""
    metrics = [m for m in HEADLINE[protocol] if int(m.split("@")[1]) in ks]
    if not metrics:  # none of the headline Ks evaluated: the protocol's metrics at every K
        primary = HEADLINE[protocol][0].split("@")[0]
        metrics = [f"{name}@{k}" for k in ks for name in (primary, "NDCG")]
    models = [x for x in mean[protocol] if x != ORACLE] + [x for x in mean[protocol] if x == ORACLE]
    head = ["model"] + [f"{SLICE_TITLE[s]} {m}" for s in SLICES for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # the best *model* is bold; the oracle is an upper bound, not a contender
    best = {(s, m): max((mean[protocol][x][s].get(m, -1.0) for x in models if x != ORACLE), default=None)
            for s in SLICES for m in metrics}
    for x in models:
        cells = [ORACLE_LABEL if x == ORACLE else x]
        for s in SLICES:
            for m in metrics:
                v = mean[protocol][x][s].get(m)
                cell = _fmt(v, std[protocol][x][s].get(m))
                cells.append(f"**{cell}**" if v is not None and v == best[(s, m)] else cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_hr_curves(result: EvaluationResult, mean: dict, std: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for p in result.protocols():
        fig, axes = plt.subplots(1, len(SLICES), figsize=(4.2 * len(SLICES), 3.6), sharey=True)
        for ax, s in zip(axes, SLICES, strict=True):
            for m in result.models():
                vals = mean[p].get(m, {}).get(s)
                if not vals:
                    continue
                y = [vals[f"HR@{k}"] for k in result.ks]
                e = [std[p][m][s].get(f"HR@{k}") or 0.0 for k in result.ks]
                ax.errorbar(result.ks, y, yerr=e, marker="o", capsize=3,
                            label=f"{ORACLE} (upper bound)" if m == ORACLE else m,
                            linestyle="--" if m == ORACLE else "-")
            if not ax.lines:
                ax.text(0.5, 0.5, "no test cases in this slice", ha="center", va="center",
                        transform=ax.transAxes, color="grey")
            ax.set_title(f"{SLICE_TITLE[s]} (n={result.cases.get(p, {}).get(s, 0)})")
            ax.set_xlabel("K")
            ax.set_xticks(result.ks)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("HR@K")
        with_lines = [ax for ax in axes if ax.lines]
        if with_lines:  # one legend beside the panels, so it never hides a curve
            handles, labels = with_lines[0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="center right", fontsize=8)
        fig.suptitle(f"{p}: HR@K per slice (mean ± std over seeds {result.seeds})")
        fig.tight_layout(rect=(0, 0, 0.88, 1))
        path = out / f"hr_at_k_{p}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        paths.append(path)
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
    doc = {"run": result.run, "created": datetime.now(UTC).isoformat(timespec="seconds"),
           "seeds": result.seeds, "ks": result.ks, "protocols": mean, "std": std, "per_seed": per_seed,
           "cases": result.cases, "strongest": best, "timing_s": timing, "notes": result.notes,
           "skipped": result.skipped}
    if shares:
        doc["oracle_share"] = shares
    write_json_atomic(doc, out / "metrics.json")

    plots = _plot_hr_curves(result, mean, std, out)
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
               markdown_table(p, mean, std, result.ks), "", f"![HR@K {p}](hr_at_k_{p}.png)", ""]
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
        table = Table(title=f"{p}: mean±std over seeds {metrics_json['seeds']}", box=box.SIMPLE_HEAD,
                      caption="every metric and K: report.md, metrics.json")
        table.add_column("model", no_wrap=True)
        table.add_column("metric", no_wrap=True)
        for s in SLICES:
            n = metrics_json.get("cases", {}).get(p, {}).get(s)
            table.add_column(s + (f"\nn={n}" if n is not None else ""), justify="right", no_wrap=True)
        for model, slices in models.items():
            for i, m in enumerate(metrics):
                row = [(f"{ORACLE} (upper bound)" if model == ORACLE else model) if i == 0 else "", m]
                for s in SLICES:
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
