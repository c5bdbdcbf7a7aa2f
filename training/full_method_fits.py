"""The full method in the yardstick: its stage-2 model fitted at each protocol's cut, handed to the
retriever (`rgcd.training.full_method.RGCD`) as vectors by item id."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from rgcd.training.full_method import RGCD, Stage2Vectors, retriever_config
from rgcd.training.recommender import TrainData

# The full method's retriever without stage-2 vectors (no stage-2 fit): what the wiring alone gives.
NO_STAGE2 = "rgcd-no-stage2"


def protocol_cut(ws, protocol: str, data: TrainData):
    """The time before which the stage-2 model may see behaviour pairs, per protocol.

    live-room: its cut (the first test request). klm3-cdr splits per user, so it has no single
    cut: the earliest live test interaction of any user, so no pair built from a test-period live
    session is seen (pairs of the 10% of klm3 test sessions before the live-room cut would be).
    """
    if data.catalog.cut is not None:
        return data.catalog.cut
    from rgcd.training.marts import read_mart

    ev = read_mart(ws, "eval_klm3_cdr")
    return ev.filter((pl.col("domain") == "live") & (pl.col("split") == "test"))["event_timestamp"].min()



# The stage-2 vectors of the model being evaluated, per (model, cut): its seeds and protocols
# share them; the next model (or `forget_stage2_vectors`) drops them.
_STAGE2_MEMO: dict[tuple[str, object], Stage2Vectors] = {}



def forget_stage2_vectors() -> None:
    _STAGE2_MEMO.clear()



def full_method_factories(ws, settings, names: Sequence[str]) -> dict[str, Callable[[], RGCD]]:
    """Evaluation factories for the full method and its ablations (names from rgcd.config.FULL_METHOD).

    Each fits its stage-2 model on demand at the protocol's cut (`protocol_cut`), cached on disk
    by config digest and inputs (`rgcd.training.stage2.fit_at`) and in memory for this run.
    """
    from rgcd.training.decomposition import ABLATIONS, ablation_config
    from rgcd.training.stage2 import fit_at, stage2_vectors

    unknown = [n for n in names if n not in ABLATIONS and n != NO_STAGE2]
    if unknown:
        known = ", ".join([*ABLATIONS, NO_STAGE2])
        raise ValueError(f"unknown full-method model(s) {unknown}; known: {known}")
    memo = _STAGE2_MEMO

    def vectors_for(name: str, data: TrainData) -> Stage2Vectors | None:
        if name == NO_STAGE2:
            return None
        cut = protocol_cut(ws, data.protocol, data)
        if any(n != name for n, _ in memo):  # another model's vectors (~100 MB a cut) are done with
            memo.clear()
        if (name, cut) not in memo:
            fit = fit_at(ws, settings, ablation_config(settings.transfer, name), cut)
            memo[(name, cut)] = stage2_vectors(fit, ws.student)
        return memo[(name, cut)]

    def factory(name: str) -> Callable[[], RGCD]:
        return lambda: RGCD(name, lambda data: vectors_for(name, data), retriever_config(settings))

    return {n: factory(n) for n in names}
