"""How each model looks in every plot: one colour and one marker per model, the oracle dashed.

The one mapping; every plot of a model (the report's curves and intervals, the benchmarks') asks
`style_of`. Colours are distinct for every model the platform evaluates (baselines, the full method
and its ablations); a model not listed gets a colour and marker chosen from its name, so it keeps
them from run to run.
"""

from __future__ import annotations

import zlib

# name -> (colour, marker). Baselines in muted or warm hues, the full method red and its ablations
# in its neighbours; the oracle black (and dashed: an upper bound, not a model).
MODEL_STYLE: dict[str, tuple[str, str]] = {
    "popularity": ("#7f7f7f", "s"),
    "creator_link": ("#8c564b", "P"),
    "creator_link_popularity": ("#c49c94", "X"),
    "bpr_mf": ("#9467bd", "v"),
    "content_mm": ("#bcbd22", "<"),
    "content_text": ("#17becf", ">"),
    "uniembed": ("#1f77b4", "D"),
    "emcdr": ("#ff7f0e", "^"),
    "rgcd": ("#d62728", "o"),
    "rgcd-no-reasoning": ("#ff9896", "h"),
    "rgcd-no-decomposition": ("#e377c2", "p"),
    "rgcd-no-routing": ("#2ca02c", "*"),
    "rgcd-no-stage2": ("#8c6d31", "8"),
    "oracle": ("#000000", "d"),
}
DASHED = frozenset({"oracle"})
_SPARE_COLOURS = ("#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79")
_SPARE_MARKERS = ("1", "2", "3", "4", "+", "x", "8", "H")


def style_of(model: str) -> dict[str, str]:
    """matplotlib keyword arguments (color, marker, linestyle) for `model`'s lines and points."""
    if model in MODEL_STYLE:
        colour, marker = MODEL_STYLE[model]
    else:
        h = zlib.crc32(model.encode())
        colour = _SPARE_COLOURS[h % len(_SPARE_COLOURS)]
        marker = _SPARE_MARKERS[(h // len(_SPARE_COLOURS)) % len(_SPARE_MARKERS)]
    return {"color": colour, "marker": marker, "linestyle": "--" if model in DASHED else "-"}
