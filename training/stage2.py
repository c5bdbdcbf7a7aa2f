"""`rgcd transfer`: fit stage 2 at the training cut, write the vectors, the model and the report.

Inputs, all point in time at the cut: behaviour pairs and the teacher's pair judgement through
Feast's `pair_training` service (`read_pairs`), the teacher's item-level answers of each pair's two
items through the `item_answers` service (what fills the pairs it did not judge), item facts through
the `item_content` view, and the student's chorus states (memory-mapped,
`rgcd.training.decomposition.ChorusStates`). Room pairs only: an author pair has no single live item
with chorus states.

Writes:
- `<ws>/feature_data/item_embeddings.parquet`: every item of both domains with `transferable`,
  `residual`, `retrieval` (the downstream retriever's item tower), `model_version`
  (`rgcd-<8 hex>`), `event_timestamp` = the cut, `created_timestamp` = now (the last
  `transfer.keep_versions` versions are kept, for rollback);
- `<ws>/feature_data/user_embeddings.parquet`: the retriever's user tower, same space as `retrieval`;
- `<ws>/models/transfer/versions/<version>/`: `aggregation.safetensors`, `retriever.safetensors`,
  `published.json` (the versions kept in item_embeddings; `rgcd publish` copies the one it
  publishes to `<ws>/models/published/`, where `load_published(ws).encode(...)` turns a new room's
  chorus states into its
  three vectors);
- `<ws>/reports/transfer.json` and `<ws>/reports/transfer_projection.png`.

Fits are cached under `<ws>/models/transfer/fits/<fingerprint>/` by (config, cut, student version,
pairs): a rerun with nothing changed retrains nothing; a killed run resumes from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import torch

from rgcd.atomic import atomic_path, write_json_atomic
from rgcd.config import Settings, TransferConfig, Workspace
from rgcd.training import distributed
from rgcd.training.checkpoint import Checkpointer
from rgcd.training.chorus_states import ChorusStates
from rgcd.training.decomposition import (
    FILL_SOURCES,
    METHOD_VERSION,
    PairSet,
    QueryAggregation,
    alignment,
    encode_all,
    fill_sources,
    fit_item_answer_filler,
    fit_transferability_probe,
    held_out_mask,
    high_purity,
    planned_steps,
    purity_scores,
    train,
)
from rgcd.training.frames import MissingInput, checked_store
from rgcd.training.published_model import prune_versions, save_published
from rgcd.training.rows_on_disk import RowsOnDisk
from rgcd.training.vector_tables import TIMESTAMP, vectors_column, write_versioned_table

# Part of the published retriever's fingerprint: bump it when the retriever's code changes what it learns.
RETRIEVER_VERSION = "room-3"


# ---- inputs through Feast --------------------------------------------------------------------------

def _hash_rank(ids: list[str]) -> np.ndarray:
    # Salted: the held-out split hashes the bare id, and a sample by the same hash would hold out
    # a larger share than configured (the smallest hashes are the held-out ones).
    return np.array([int(hashlib.sha1(f"sample|{i}".encode()).hexdigest()[:12], 16) for i in ids],
                    dtype=np.int64)


def read_pairs(ws: Workspace, settings: Settings, cut: datetime, states: ChorusStates,
               cfg: TransferConfig) -> tuple[PairSet, dict[str, int]]:
    """Room pairs as of `cut` from the `pair_training` service, mapped to chorus-state rows.

    The entity frame holds ids only: pair ids of the behaviour_pairs mart that name a live room
    and whose row is stamped at or before the cut (later ones are invisible at the cut anyway),
    a hash sample of `cfg.max_pairs` when there are more. Every value comes from the store.
    Returns the pairs and counts (eligible, read, without chorus states).
    """
    from rgcd.featurestore.store import frame

    path = ws.marts / "behaviour_pairs.parquet"
    if not path.exists():
        raise MissingInput(f"{path} is missing: run `rgcd build` (dbt) first")
    views = ["behaviour_pairs"]
    reasoning = (ws.feature_data / "pair_reasoning.parquet").exists()
    if reasoning:
        views.append("pair_reasoning")
    store = checked_store(ws, settings, ["behaviour_pairs"])
    ids = (pl.scan_parquet(path)
           .filter(pl.col("pair_id").str.contains("|live:", literal=True)
                   & (pl.col("event_timestamp") < cut))
           .select("pair_id").unique().collect()["pair_id"].to_list())
    eligible = len(ids)
    if len(ids) > cfg.max_pairs:
        # Every pair the teacher judged first (the probe then fills only the rest), then a hash
        # sample of the others.
        judged = _judged_pair_ids(ws) if reasoning else set()
        rank = _hash_rank(ids) - np.array([i in judged for i in ids], dtype=np.int64) * (1 << 62)
        ids = [ids[i] for i in np.argsort(rank, kind="stable")[:cfg.max_pairs]]
    ids.sort()
    entities = pl.DataFrame({"pair_id": ids}).with_columns(
        pl.lit(cut).dt.convert_time_zone("UTC").alias("event_timestamp"))
    got = frame(store, entities, service="pair_training", views=views)
    got = got.rename({c: c.split("__", 1)[1] for c in got.columns if "__" in c})
    if not reasoning:
        got = got.with_columns(pl.lit(None, pl.Float64).alias("semantic_transferability"))
    # Sorted: the store need not answer in the entity frame's order, and the pairs' order decides
    # every batch (and the fit's fingerprint).
    got = got.filter(pl.col("photo_item_id").is_not_null()).sort("pair_id")
    row = states.row_of
    photo = np.array([row.get(i, -1) for i in got["photo_item_id"].to_list()], dtype=np.int64)
    live = np.array([row.get(i, -1) for i in got["target_id"].to_list()], dtype=np.int64)
    keep = (photo >= 0) & (live >= 0)
    got = got.filter(pl.Series(keep))
    pair_ids = got["pair_id"].to_list()
    same_answers, items_answered = None, 0
    if cfg.item_answer_fields and cfg.use_reasoning and (ws.feature_data / "item_reasoning.parquet").exists():
        same_answers, items_answered = _same_answers(store, cut, got["photo_item_id"].to_list(),
                                                     got["target_id"].to_list(), cfg.item_answer_fields)
    pairs = PairSet(
        pair_id=pair_ids, photo=photo[keep], live=live[keep],
        strength=got["strength"].to_numpy().astype(np.float64),
        distinct_users=got["distinct_users"].to_numpy().astype(np.float64),
        teacher=got["semantic_transferability"].fill_null(np.nan).to_numpy().astype(np.float64),
        held_out=held_out_mask(pair_ids, cfg.held_out_fraction),
        streamer=got["author_id"].fill_null(-1).to_numpy().astype(np.int64),
        same_answers=same_answers)
    return pairs, {"eligible": eligible, "read": len(ids), "without_chorus_states": int((~keep).sum()),
                   "reasoning_table": int(reasoning), "items_answered": items_answered}


def _same_answers(store, cut: datetime, photos: list[str], rooms: list[str],
                  fields: list[str]) -> tuple[np.ndarray, int]:
    """Per pair and field: 1.0 where the two items' item-level answers agree, 0.0 where they differ,
    NaN where either has none; and how many of the pairs' items have an answer.

    Read as the pairs are: through Feast's `item_answers` service at the cut. item_reasoning is a
    backfill view (docs/features.md): a row is visible from its evidence time (the item's first
    appearance) and never before, so an answer stamped after the cut, or a later regeneration
    stamped after it, is not read here.
    """
    from rgcd.featurestore.store import frame

    items = sorted(set(photos) | set(rooms))
    entities = pl.DataFrame({"item_id": items}).with_columns(
        pl.lit(cut).dt.convert_time_zone("UTC").alias("event_timestamp"))
    got = frame(store, entities, service="item_answers")
    columns = {f: dict(zip(got["item_id"].to_list(), got[f"item_reasoning__{f}"].to_list(), strict=True))
               for f in fields}
    same = np.full((len(photos), len(fields)), np.nan)
    for j, f in enumerate(fields):
        answer = columns[f]
        for i, (p, r) in enumerate(zip(photos, rooms, strict=True)):
            a, b = answer.get(p), answer.get(r)
            if a is not None and b is not None:
                same[i, j] = float(a == b)
    has_answer = got.select(pl.any_horizontal(pl.col(f"item_reasoning__{f}").is_not_null() for f in fields))
    return same, int(has_answer.to_series().sum())


def _judged_pair_ids(ws: Workspace) -> set[str]:
    """Pair ids the teacher judged (pair_reasoning's rows)."""
    return set(pl.read_parquet(ws.feature_data / "pair_reasoning.parquet", columns=["pair_id"])["pair_id"])


def read_items(ws: Workspace, settings: Settings, cut: datetime) -> pl.DataFrame:
    """item_id, domain, author_id, category_l1, start_timestamp of every item, from the item_content view."""
    from rgcd.featurestore.store import frame

    store = checked_store(ws, settings, ["item_content"])
    ids = (pl.scan_parquet(ws.marts / "item_content.parquet").select("item_id").unique()
           .sort("item_id").collect())
    entities = ids.with_columns(pl.lit(cut).dt.convert_time_zone("UTC").alias("event_timestamp"))
    got = frame(store, entities, service="item_facts")
    return got.rename({c: c.split("__", 1)[1] for c in got.columns if "__" in c}).drop("event_timestamp")


def training_cut(ws: Workspace) -> datetime:
    """The default cut of `rgcd transfer`: the latest event in the pair and item marts (all the data)."""
    latest = []
    for name in ("behaviour_pairs", "item_content"):
        path = ws.marts / f"{name}.parquet"
        if not path.exists():
            raise MissingInput(f"{path} is missing: run `rgcd build` (dbt) first")
        latest.append(pl.scan_parquet(path).select(pl.col("event_timestamp").max()).collect().item())
    return max(t for t in latest if t is not None)


# ---- one fit, cached by what it depends on ---------------------------------------------------------

@dataclass
class Fit:
    """A fitted stage-2 model and its vectors for every chorus-state row."""

    fingerprint: str
    model: QueryAggregation
    transferable: np.ndarray | RowsOnDisk  # on disk (the fit's vectors.safetensors), read by rows
    residual: np.ndarray | RowsOnDisk | None
    summary: dict
    reused: bool
    train_seconds: float = 0.0


def _fingerprint(cfg: TransferConfig, cut: datetime, states: ChorusStates, pairs: PairSet) -> str:
    h = hashlib.sha256(json.dumps({"method": METHOD_VERSION, "cfg": cfg.model_dump(), "cut": cut.isoformat(),
                                   "student": states.student_version, "items": len(states)},
                                  sort_keys=True).encode())
    h.update("\n".join(pairs.pair_id).encode())
    for arr in (pairs.photo, pairs.live, pairs.strength, pairs.distinct_users, pairs.teacher):
        h.update(np.ascontiguousarray(arr).tobytes())
    if pairs.same_answers is not None:
        h.update(np.ascontiguousarray(pairs.same_answers).tobytes())
    return h.hexdigest()[:16]


def fit_at(ws: Workspace, settings: Settings, cfg: TransferConfig, cut: datetime,
           show_progress: bool = False, on_step=None) -> Fit:
    """Stage 2 fitted on the pairs visible at `cut`; reused when the same fit exists already."""
    from safetensors.torch import load_file, save_file

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    try:
        states = ChorusStates(ws.student)
    except FileNotFoundError as err:
        raise MissingInput(str(err)) from err
    pairs, counts = read_pairs(ws, settings, cut, states, cfg)
    fp = _fingerprint(cfg, cut, states, pairs)
    folder = ws.models / "transfer" / "fits" / fp
    torch.manual_seed(cfg.seed)
    model = QueryAggregation(states.dim, cfg)
    if (folder / "fit.json").exists():
        model.load_state_dict(load_file(folder / "model.safetensors"))
        transferable, residual = fit_vectors(folder)
        return Fit(fp, model.eval(), transferable, residual,
                   json.loads((folder / "fit.json").read_text()), reused=True)
    pooled = states.pooled_rows(np.concatenate([pairs.photo, pairs.live]))  # the pairs' items only
    probe = fit_transferability_probe(pooled, pairs) if cfg.use_reasoning else None
    answers = (fit_item_answer_filler(pairs, cfg.item_answer_fields)
               if cfg.use_reasoning and pairs.same_answers is not None else None)
    purity = purity_scores(pairs, cfg, pooled, probe, answers)
    high = high_purity(purity, cfg)
    t0 = time.perf_counter()
    checkpoints = Checkpointer(folder / "checkpoints", cfg.checkpoint_every, fingerprint=fp)
    with _progress(show_progress and distributed.is_main(),
                   planned_steps(int((~pairs.held_out).sum()), cfg)) as advance:
        def step_hook(step: int, loss: float) -> None:
            advance(step, loss)
            if on_step is not None:
                on_step(step, loss)
        losses, stopping = train(model, states, pairs, high, cfg, checkpoints, step_hook)
    seconds = time.perf_counter() - t0
    if not distributed.is_main():  # under torchrun rank 0 alone encodes, measures and writes the fit
        return Fit(fp, model, np.empty((0, cfg.dim), np.float32), None, {"worker_rank": distributed.rank()},
                   reused=False, train_seconds=seconds)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "vectors.safetensors") as tmp:
        encode_all(model, states, cfg.encode_batch_size, tmp)
    transferable, residual = fit_vectors(folder)
    train_rows = ~pairs.held_out
    summary = {
        "fingerprint": fp, "cut": cut.isoformat(), "student_version": states.student_version,
        "config": cfg.model_dump(),
        "pairs": {**counts, "used": len(pairs.pair_id), "train": int(train_rows.sum()),
                  "held_out": int(pairs.held_out.sum())},
        "purity": {"high": int(high.sum()), "low": int((~high).sum()),
                   "threshold": float(np.quantile(purity, cfg.high_purity_quantile)) if len(purity) else None,
                   "teacher_judged": int((~np.isnan(pairs.teacher)).sum()),
                   "from": ("behaviour x teacher transferability"
                            if probe is not None and probe.weights is not None else "behaviour alone"),
                   "probe": None if probe is None else {"judged": probe.judged, "held_out_mae": probe.mae,
                                                        "held_out_mae_constant": probe.mae_constant},
                   "item_answers": None if answers is None else answers.as_dict(),
                   "filled_by": _filled_by(pairs, probe, answers),
                   # how purity and the teacher agree: mean teacher score of high vs low pairs
                   "teacher_mean_high": _nanmean(pairs.teacher[high]),
                   "teacher_mean_low": _nanmean(pairs.teacher[~high])},
        "losses": {"first": round(losses[0], 4), "last": round(float(np.mean(losses[-20:])), 4),
                   "steps": len(losses), "every_50": [round(x, 4) for x in losses[::50]]},
        "stopping": stopping,
        "alignment": alignment(transferable, residual, pairs, high, cfg.seed),
        "topic_probe": topic_probe(ws, settings, cut, states, pairs, transferable, residual, cfg.seed),
        "transferability_vs_truth": transferability_vs_truth(ws, pairs, pooled, probe, states, answers),
        "train_seconds": round(seconds, 2),
    }
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp)
    write_json_atomic(summary, folder / "fit.json")  # last: its presence means the fit is complete
    checkpoints.clear()
    return Fit(fp, model, transferable, residual, summary, reused=False, train_seconds=seconds)


def fit_vectors(folder: Path) -> tuple[RowsOnDisk, RowsOnDisk | None]:
    """A fit's (transferable, residual) vectors, read from its vectors.safetensors by rows."""
    path = folder / "vectors.safetensors"
    return (RowsOnDisk(path, "transferable"),
            RowsOnDisk(path, "residual") if "residual" in RowsOnDisk.names(path) else None)


def _item_labels(ws: Workspace, settings: Settings, cut: datetime) -> tuple[dict[str, str], str]:
    """item_id -> the label the topic probe predicts: the world's latent topic where it has one,
    else the level-1 category at the cut."""
    from rgcd.training.reasoning.truth import load_item_topics

    topics = load_item_topics(ws)
    if topics:
        return {i: str(t) for i, t in topics.items()}, "latent topic"
    facts = read_items(ws, settings, cut).select("item_id", "category_l1").drop_nulls()
    return dict(zip(facts["item_id"].to_list(), facts["category_l1"].to_list(), strict=True)), "category_l1"


def topic_probe(ws: Workspace, settings: Settings, cut: datetime, states: ChorusStates, pairs: PairSet,
                transferable: np.ndarray, residual: np.ndarray | None, seed: int,
                max_items: int = 5_000) -> dict:
    """A linear probe's accuracy at an item's topic from its chorus states (before stage 2) and from
    its stage-2 vectors (after), on the items of the pairs (all before the cut), split 80/20 by a
    hash of the item id; up to `max_items` items."""
    from rgcd.training.distill import linear_probe

    labels, what = _item_labels(ws, settings, cut)
    rows = np.unique(np.concatenate([pairs.photo, pairs.live]))
    rows = np.array([r for r in rows if states.item_ids[r] in labels], dtype=np.int64)
    if len(rows) < 20:
        return {"label": what, "items": int(len(rows)), "note": "too few labelled items"}
    rows = rows[np.argsort(_hash_rank([states.item_ids[r] for r in rows]), kind="stable")[:max_items]]
    test = held_out_mask([states.item_ids[r] for r in rows], 0.2)
    y = [labels[states.item_ids[r]] for r in rows]
    ytr = [v for v, t in zip(y, test, strict=True) if not t]
    yte = [v for v, t in zip(y, test, strict=True) if t]
    spaces = {"chorus_states": states.take(rows).numpy(),
              "transferable": transferable[rows]}
    if residual is not None:
        spaces["residual"] = residual[rows]
        spaces["joint"] = np.hstack([transferable[rows], residual[rows]])
    out: dict = {"label": what, "train_items": len(ytr), "test_items": len(yte)}
    for name, x in spaces.items():
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        accuracy, majority, classes = linear_probe(x[torch.from_numpy(~test)], ytr, x[torch.from_numpy(test)],
                                                   yte, seed=seed)
        out[name] = round(accuracy, 4)
        out["majority"], out["classes"] = round(majority, 4), classes
    return out


def _filled_by(pairs: PairSet, probe, answers) -> dict[str, int] | None:
    """How many pairs took their transferability from each source (FILL_SOURCES); None when purity
    is behaviour alone."""
    if probe is None or probe.weights is None:
        return None
    counts = np.bincount(fill_sources(pairs, answers), minlength=len(FILL_SOURCES))
    return {name: int(n) for name, n in zip(FILL_SOURCES, counts, strict=True)}


def transferability_vs_truth(ws: Workspace, pairs: PairSet, pooled: np.ndarray, probe, states,
                             answers=None) -> dict | None:
    """ROC AUC of the transferability that purity uses against the world's truth (same latent topic),
    for the pairs the teacher judged, those the item answers filled (with the probe's AUC on the
    same pairs beside it), those the probe filled, and every unjudged pair (the filler against the
    probe alone); None without latent truth. A measurement only: nothing here feeds the fit."""
    from rgcd.training.decomposition import filled_transferability
    from rgcd.training.reasoning.truth import load_item_topics, roc_auc

    topics = load_item_topics(ws)
    if not topics:
        return None
    ids = states.item_ids
    both = list(zip(pairs.photo, pairs.live, strict=True))
    known = np.array([ids[p] in topics and ids[r] in topics for p, r in both], dtype=bool)
    same = np.array([known[n] and topics[ids[p]] == topics[ids[r]]
                     for n, (p, r) in enumerate(both)], dtype=bool)
    judged = ~np.isnan(pairs.teacher)
    out = {"truth": "same latent topic", "pairs_with_truth": int(known.sum())}
    out["teacher"] = {"pairs": int((known & judged).sum()),
                      "auc": _round(roc_auc(pairs.teacher[known & judged], same[known & judged]))}
    if probe is not None and probe.weights is not None:
        filled = filled_transferability(pairs, pooled, probe, answers)
        probe_only = filled_transferability(pairs, pooled, probe)
        source = fill_sources(pairs, answers)
        by_answers = known & (source == FILL_SOURCES.index("item_answers"))
        by_probe = known & (source == FILL_SOURCES.index("probe"))
        unjudged = known & ~judged
        def auc(scores: np.ndarray, sel: np.ndarray) -> float | None:
            return _round(roc_auc(scores[sel], same[sel]))

        out["item_answers_filled"] = {"pairs": int(by_answers.sum()), "auc": auc(filled, by_answers),
                                      "probe_auc_same_pairs": auc(probe_only, by_answers)}
        out["probe_filled"] = {"pairs": int(by_probe.sum()), "auc": auc(filled, by_probe)}
        out["unjudged"] = {"pairs": int(unjudged.sum()), "auc": auc(filled, unjudged),
                           "probe_alone_auc": auc(probe_only, unjudged)}
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return round(float(x.mean()), 4) if len(x) else None


class _progress:
    """A rich bar over training steps that shows the loss; a no-op when hidden."""

    def __init__(self, show: bool, total: int) -> None:
        self.show, self.total = show, total

    def __enter__(self):
        if not self.show:
            return lambda step, loss: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]transfer[/] {task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
        self.bar.__enter__()
        task = self.bar.add_task("training", total=self.total)
        return lambda step, loss: self.bar.update(task, completed=step, description=f"loss {loss:.3f}")

    def __exit__(self, *exc) -> None:
        if self.show:
            self.bar.__exit__(*exc)


def stage2_vectors(fit: Fit, states_dir: Path):
    """The fit's vectors by item id, for the downstream retriever."""
    from rgcd.training.full_method import Stage2Vectors

    index = pl.read_parquet(states_dir / "chorus_index.parquet").sort("row")
    return Stage2Vectors(index["item_id"].to_list(), fit.transferable, fit.residual,
                         f"rgcd-{fit.fingerprint[:8]}")


# ---- the stage: fit at the cut, the downstream retriever, the tables, the report -------------------

@dataclass
class TransferReport:
    """Figures of one `rgcd transfer` run (the whole of it is in reports/transfer.json)."""

    model_version: str
    cut: str
    items: int
    users: int
    pairs_train: int
    high_purity: int
    low_purity: int
    alignment: dict
    reused_fit: bool
    reused_all: bool
    train_seconds: float
    wall_seconds: float
    online: str = ""
    paths: dict = field(default_factory=dict)

    def one_line(self) -> str:
        """The run in one line of figures."""
        a = self.alignment.get("transferable", {})
        fmt = {k: ("n/a" if v is None else f"{v:.2f}") for k, v in a.items()}
        state = ("unchanged, nothing retrained" if self.reused_all
                 else "fit reused" if self.reused_fit else f"trained {self.train_seconds:.0f} s")
        line = (f"{self.model_version}: {self.items} items, {self.users} users; {self.pairs_train} "
                f"train pairs ({self.high_purity} high / {self.low_purity} low purity); held-out cosine "
                f"in the transferable space high {fmt.get('high_purity')} / low {fmt.get('low_purity')} / "
                f"random {fmt.get('random')}; {state}")
        return line + (f"; {self.online}" if self.online else "")


def train_data_at(ws: Workspace, cut: datetime):
    """The downstream retriever's training split: positive interactions before `cut` (both domains)."""
    from rgcd.training.marts import interactions_before, read_mart
    from rgcd.training.recommender import ItemCatalog, TrainData

    catalog = ItemCatalog(read_mart(ws, "item_content").select(
        "item_id", "domain", "author_id", "start_timestamp", "mm_embedding"), cut=cut)
    inter = pl.read_parquet(ws.marts / "user_item_interactions.parquet",
                            columns=["user_id", "item_id", "domain", "event_timestamp", "is_positive"])
    return TrainData("published", interactions_before(inter, catalog, cut), catalog)


def _stamps(n: int, cut: datetime, created: datetime) -> list[pl.Series]:
    return [pl.Series("event_timestamp", [cut] * n, dtype=TIMESTAMP),
            pl.Series("created_timestamp", [created] * n, dtype=TIMESTAMP)]


def _retriever_fingerprint(fit: Fit, data, settings: Settings) -> str:
    ev = settings.evaluation
    h = hashlib.sha256(f"{fit.fingerprint}|{ev.dim}|{ev.contrastive_samples}|{settings.transfer.seed}|"
                       f"{settings.transfer.retriever_id_dropout}|{RETRIEVER_VERSION}".encode())
    h.update(data.interactions.select("user_id", "key").hash_rows().to_numpy().tobytes())
    return h.hexdigest()[:16]


def transfer(ws: Workspace, settings: Settings, *, show_progress: bool = True) -> TransferReport | None:
    """Run stage 2 end to end (see the module docstring); unchanged inputs retrain nothing. Under
    torchrun (training/distributed.py) every rank trains on its share of each batch; rank 0 goes on
    alone (the retriever, the tables, the report), the others return None."""
    from rgcd.training.full_method import RGCD, retriever_config

    started = time.perf_counter()
    cfg = settings.transfer
    distributed.start(settings.distributed)
    cut = training_cut(ws)
    fit = fit_at(ws, settings, cfg, cut, show_progress)
    if not distributed.is_main():
        return None
    version = f"rgcd-{fit.fingerprint[:8]}"
    states_dir = ws.student
    data = train_data_at(ws, cut)
    retriever_fp = _retriever_fingerprint(fit, data, settings)
    published = ws.stage2_model(version)
    items_path = ws.feature_data / "item_embeddings.parquet"
    users_path = ws.feature_data / "user_embeddings.parquet"
    meta_path = published / "published.json"
    if (meta_path.exists() and items_path.exists() and users_path.exists()
            and json.loads(meta_path.read_text()).get("retriever_fingerprint") == retriever_fp):
        report = TransferReport(**json.loads((ws.reports / "transfer.json").read_text())["report"])
        report.reused_fit = report.reused_all = True
        report.online, report.wall_seconds = "", round(time.perf_counter() - started, 2)
        return report

    evc = settings.evaluation
    retriever = RGCD("rgcd", lambda _: stage2_vectors(fit, states_dir), retriever_config(settings))
    with _threads(evc.torch_threads):
        retriever.fit(data, cfg.seed)
    assert retriever.stage2 is not None and retriever.tower is not None
    item_ids = retriever.stage2.item_ids
    created = datetime.now(UTC)
    domains = pl.read_parquet(states_dir / "chorus_index.parquet").sort("row")["domain"]
    n = len(item_ids)
    users_v = retriever.user_vectors()
    user_ids = users_v.ids
    ws.feature_data.mkdir(parents=True, exist_ok=True)
    _write_vector_tables(items_path, users_path, version, cfg, cut, created, item_ids, domains,
                         (fit.transferable, fit.residual, lambda ids: retriever.retrieval_vectors(ids)[0]),
                         user_ids, users_v.vectors)
    save_published(published, fit.model, fit.fingerprint, retriever, version, retriever_fp, cut, cfg)
    kept = pl.scan_parquet(items_path).select("model_version").unique().collect()["model_version"]
    prune_versions(ws, set(kept.to_list()))
    plot = _plot_spaces(ws, settings, cut, fit, item_ids, ws.reports / "transfer_projection.png")
    # Serving reads only what `rgcd publish` wrote: the new version reaches the online store and
    # Milvus together there, so a reader never sees an item vector whose version Milvus lacks.
    online = "online store and Milvus: run `rgcd publish`"
    s = fit.summary
    report = TransferReport(
        model_version=version, cut=cut.isoformat(), items=n, users=len(user_ids),
        pairs_train=s["pairs"]["train"], high_purity=s["purity"]["high"], low_purity=s["purity"]["low"],
        alignment=s["alignment"], reused_fit=fit.reused, reused_all=False,
        train_seconds=fit.train_seconds, wall_seconds=round(time.perf_counter() - started, 2), online=online,
        paths={"item_embeddings": str(items_path), "user_embeddings": str(users_path),
               "model": str(published), "projection": str(plot)})
    write_json_atomic({"report": asdict(report), "fit": s, "peak_rss_mb": _peak_rss_mb(),
                       "retriever": {"fingerprint": retriever_fp, "dim": evc.dim,
                                     "samples": evc.contrastive_samples,
                                     "train_interactions": data.interactions.height}},
                      ws.reports / "transfer.json")
    return report


def _write_vector_tables(items_path: Path, users_path: Path, version: str, cfg: TransferConfig, cut: datetime,
                         created: datetime, item_ids: list[str], domains: pl.Series,
                         item_vectors: tuple[RowsOnDisk, RowsOnDisk | None,
                                             Callable[[list[str]], np.ndarray]],
                         user_ids, user_vectors: np.ndarray) -> None:
    """item_embeddings and user_embeddings, `cfg.write_batch_rows` rows at a time (vector_tables.py):
    each batch's stage-2 vectors are read from the fit's file and its retrieval vectors computed
    by the retriever's item tower then, so no batch holds the catalogue's vectors."""
    transferable, residual, retrieval_of = item_vectors

    def items(start: int, stop: int) -> pl.DataFrame:
        n = stop - start
        return pl.DataFrame([
            pl.Series("item_id", item_ids[start:stop], pl.Utf8), domains.slice(start, n).alias("domain"),
            vectors_column(transferable[start:stop], n).alias("transferable"),
            vectors_column(None if residual is None else residual[start:stop], n).alias("residual"),
            vectors_column(retrieval_of(item_ids[start:stop]), n).alias("retrieval"),
            pl.Series("model_version", [version] * n, pl.Utf8), *_stamps(n, cut, created)])

    def users(start: int, stop: int) -> pl.DataFrame:
        n = stop - start
        return pl.DataFrame([
            pl.Series("user_id", [int(u) for u in user_ids[start:stop]], pl.Int64),
            vectors_column(user_vectors[start:stop], n).alias("user_vector"),
            pl.Series("model_version", [version] * n, pl.Utf8), *_stamps(n, cut, created)])

    write_versioned_table(items_path, version, cfg.keep_versions, len(item_ids), cfg.write_batch_rows, items)
    write_versioned_table(users_path, version, cfg.keep_versions, len(user_ids), cfg.write_batch_rows, users)


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _threads(n: int):
    from rgcd.training.recommender import torch_threads

    return torch_threads(n)







# ---- the picture: both spaces side by side, by domain and by level-1 category ----------------------

def _plot_spaces(ws: Workspace, settings: Settings, cut: datetime, fit: Fit, item_ids: list[str], path: Path,
                 per_domain: int = 2000) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rgcd.training.projection import pca_2d

    facts = read_items(ws, settings, cut).select("item_id", "category_l1")
    cat = dict(zip(facts["item_id"].to_list(), facts["category_l1"].to_list(), strict=True))
    domain = np.array(["short video" if i.startswith("photo:") else "live" for i in item_ids])
    rng = np.random.default_rng(0)
    keep = np.concatenate([rng.permutation(np.flatnonzero(domain == d))[:per_domain]
                           for d in ("short video", "live")])
    spaces = {"transferable": fit.transferable}
    if fit.residual is not None:
        spaces["residual"] = fit.residual
    cats = np.array([cat.get(item_ids[k]) or "(none)" for k in keep])
    names = sorted(set(cats))
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, axes = plt.subplots(2, len(spaces), figsize=(5.5 * len(spaces), 9.5), squeeze=False)
    for col, (name, vecs) in enumerate(spaces.items()):
        coords, ratio = pca_2d(vecs[keep].astype(np.float64))
        top, bottom = axes[0][col], axes[1][col]
        for d, colour in (("short video", "tab:blue"), ("live", "tab:orange")):
            sel = domain[keep] == d
            top.scatter(coords[sel, 0], coords[sel, 1], s=4, alpha=0.45, c=colour, label=d)
        for j, c in enumerate(names):
            sel = cats == c
            bottom.scatter(coords[sel, 0], coords[sel, 1], s=4, alpha=0.45, color=palette(j % palette.N),
                           label=c)
        title = f"{name} vectors, PCA ({ratio[0]:.0%}, {ratio[1]:.0%} of variance)"
        top.set_title(f"{title}\ncoloured by domain", fontsize=9)
        bottom.set_title(f"{title}\ncoloured by level-1 category", fontsize=9)
        top.legend(markerscale=3, fontsize=8)
        bottom.legend(markerscale=3, fontsize=7, ncol=2)
    fig.suptitle(f"stage 2 ({fit.fingerprint[:8]}): a transferable space should mix the domains by "
                 "topic; a residual space need not", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
