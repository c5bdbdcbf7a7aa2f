"""Stage 2 of RGCD-Rep: transferable and residual item vectors from the chorus states.

One shared student (stage 1b) wrote 16 chorus states per item of both domains. Here:

- **config**: `rgcd.config.TransferConfig` (`transfer:` in rgcd.yaml); the ablations are one switch
  each (`ABLATIONS`);
- **purity**: a behaviour pair's joint purity is behaviour^(1-w) x transferability^w, where
  behaviour is the percentile of strength x log(1 + distinct users) and transferability is the
  teacher's `semantic_transferability`. A pair the teacher did not judge gets it from the two
  items' item-level answers where both have one (`item_reasoning` at the cut: a least-squares fit
  of the judged pairs' scores on [same answer] per field, `ItemAnswerFit`), else from a ridge
  probe fitted on the judged pairs over the two items' mean chorus states. Pairs at or above a
  quantile are high purity;
- **module**: a query-aware aggregation. An item's chorus states, with its domain added, are
  attended by learnable queries (also shifted by the domain); one group of queries yields the
  **transferable** vector, another the **domain-residual** vector;
- **losses**: InfoNCE between the short video and the live room of each pair, other rooms of the
  batch as negatives, logits corrected by log(sampling probability) of the room (popular rooms
  are more often negatives); **routing**: high-purity pairs are matched in the transferable
  space, low-purity pairs only through transferable + residual together (the concatenation,
  with no gradient into its transferable half), so what does not transfer sits in the residual;
  **separation**: the squared cosine between an item's two vectors, so the spaces stay apart;
  **domain alignment**: each domain's mean transferable vector in the batch is pulled to the
  origin (InfoNCE is blind to a constant offset between the domains, so without it the
  transferable space can keep them apart).

Training is deterministic per (seed, step) and checkpointed (`rgcd.training.checkpoint`), so a run killed
mid-way resumes to the same weights. `encode_items` maps chorus states to the vectors; it is the
callable a room going on air is encoded with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rgcd.config import TransferConfig
from rgcd.errors import InputError
from rgcd.training import distributed
from rgcd.training.chorus_states import DOMAINS, ChorusStates
from rgcd.training.rows_on_disk import RowsOnDisk, RowsWriter

# Part of every fit's fingerprint: bump it when the method's code changes what a fit computes,
# so cached fits of the previous code are not reused.
METHOD_VERSION = "5"
# The full method and its ablations: each one switch of TransferConfig.
ABLATIONS: dict[str, dict[str, bool]] = {
    "rgcd": {},
    "rgcd-no-reasoning": {"use_reasoning": False},
    "rgcd-no-decomposition": {"decompose": False},
    "rgcd-no-routing": {"routing": False},
}


def ablation_config(base: TransferConfig, name: str) -> TransferConfig:
    """The configuration of the full method (`rgcd`) or one of its ablations."""
    return base.model_copy(update=ABLATIONS[name])


def config_digest(cfg: TransferConfig) -> str:
    """8 hex of the configuration, for caches and model versions."""
    return hashlib.sha256(json.dumps(cfg.model_dump(), sort_keys=True).encode()).hexdigest()[:8]


# ---- inputs: the chorus states, read on demand -----------------------------------------------------







@dataclass
class PairSet:
    """Behaviour pairs (short video, live room) ready to train on.

    photo / live: rows in the chorus states; strength, distinct_users: behaviour; teacher: the
    teacher's semantic_transferability (NaN where it did not judge the pair); held_out: kept out
    of training for the alignment figures.
    """

    pair_id: list[str]
    photo: np.ndarray
    live: np.ndarray
    strength: np.ndarray
    distinct_users: np.ndarray
    teacher: np.ndarray
    held_out: np.ndarray
    streamer: np.ndarray | None = None  # the room's author_id per pair (same-streamer rooms are no negatives)
    # per pair and item-answer field (TransferConfig.item_answer_fields): 1.0 where the two items'
    # item-level answers (item_reasoning at the cut) agree, 0.0 where they differ, NaN where either
    # item has no answer; None where no item answers were read
    same_answers: np.ndarray | None = None


def held_out_mask(ids: list[str], fraction: float) -> np.ndarray:
    """A hash split of pair ids: stable across runs, independent of row order."""
    return np.array([int(hashlib.sha1(i.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction for i in ids])


# ---- purity: behaviour strength x the teacher's transferability ------------------------------------

def behaviour_score(strength: np.ndarray, distinct_users: np.ndarray) -> np.ndarray:
    """Percentile (0, 1] of strength x log(1 + distinct users): strong and shared pairs score high."""
    raw = strength * np.log1p(distinct_users)
    ranks = np.argsort(np.argsort(raw, kind="stable"), kind="stable")
    return (ranks + 1) / max(1, len(raw))


def _pair_features(pooled: np.ndarray, photo: np.ndarray, live: np.ndarray) -> np.ndarray:
    a, b = pooled[photo], pooled[live]
    return np.hstack([a * b, np.abs(a - b), np.ones((len(a), 1), dtype=a.dtype)])


@dataclass
class ProbeFit:
    """The ridge probe of the teacher's transferability; mean absolute error on held-out judged pairs."""

    weights: np.ndarray | None
    judged: int
    mae: float | None
    mae_constant: float | None


def fit_transferability_probe(pooled: np.ndarray, pairs: PairSet, ridge: float = 1.0) -> ProbeFit:
    """Ridge regression of semantic_transferability on the pair's mean chorus states (judged pairs).

    Fitted on judged training pairs; its error is measured on judged held-out pairs next to the
    error of predicting the mean (the constant baseline).
    """
    judged = ~np.isnan(pairs.teacher)
    fit, test = judged & ~pairs.held_out, judged & pairs.held_out
    if fit.sum() < 10:
        return ProbeFit(None, int(judged.sum()), None, None)
    x = _pair_features(pooled, pairs.photo[fit], pairs.live[fit]).astype(np.float64)
    y = pairs.teacher[fit]
    w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)
    mae = const = None
    if test.any():
        pred = _pair_features(pooled, pairs.photo[test], pairs.live[test]) @ w
        mae = float(np.abs(np.clip(pred, 0, 1) - pairs.teacher[test]).mean())
        const = float(np.abs(y.mean() - pairs.teacher[test]).mean())
    return ProbeFit(w, int(judged.sum()), mae, const)


@dataclass
class ItemAnswerFit:
    """How the teacher's pair score follows from its item-level answers: least squares of the judged
    training pairs' semantic_transferability on [same answer] per field and an intercept (fitted on
    the teacher's own judgements: no latent truth, no test split). `weights` is None when fewer
    than 10 judged training pairs have both items answered; the error is measured on judged
    held-out pairs next to a constant's, as the probe's."""

    fields: list[str]
    weights: np.ndarray | None
    fitted_on: int
    mae: float | None
    mae_constant: float | None

    def as_dict(self) -> dict:
        """The fit for the report: one weight per field and the intercept."""
        weights = (None if self.weights is None else
                   {**{f: round(float(w), 4) for f, w in zip(self.fields, self.weights[:-1], strict=True)},
                    "intercept": round(float(self.weights[-1]), 4)})
        return {"fields": self.fields, "weights": weights, "fitted_on_judged_pairs": self.fitted_on,
                "held_out_mae": self.mae, "held_out_mae_constant": self.mae_constant}


def _answer_features(same: np.ndarray) -> np.ndarray:
    return np.hstack([same, np.ones((len(same), 1))])


def answered(pairs: PairSet) -> np.ndarray:
    """True for pairs whose two items both have every item-level answer the filler reads."""
    if pairs.same_answers is None or pairs.same_answers.shape[1] == 0:
        return np.zeros(len(pairs.pair_id), dtype=bool)
    return ~np.isnan(pairs.same_answers).any(axis=1)


def fit_item_answer_filler(pairs: PairSet, fields: list[str], ridge: float = 1.0) -> ItemAnswerFit:
    """Least squares of semantic_transferability on the pair's [same answer] per field (judged pairs
    with both items answered; training pairs to fit, held-out pairs to measure)."""
    judged = ~np.isnan(pairs.teacher) & answered(pairs)
    fit, test = judged & ~pairs.held_out, judged & pairs.held_out
    if fit.sum() < 10:
        return ItemAnswerFit(list(fields), None, int(fit.sum()), None, None)
    x, y = _answer_features(pairs.same_answers[fit]), pairs.teacher[fit]
    w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)
    mae = const = None
    if test.any():
        pred = np.clip(_answer_features(pairs.same_answers[test]) @ w, 0, 1)
        mae = round(float(np.abs(pred - pairs.teacher[test]).mean()), 4)
        const = round(float(np.abs(y.mean() - pairs.teacher[test]).mean()), 4)
    return ItemAnswerFit(list(fields), w, int(fit.sum()), mae, const)


# Where a pair's transferability comes from (`fill_sources`).
FILL_SOURCES = ("judged", "item_answers", "probe")


def fill_sources(pairs: PairSet, answers: ItemAnswerFit | None) -> np.ndarray:
    """Per pair, an index into FILL_SOURCES: the teacher's judgement where it judged the pair, else
    the item answers where both items have them (and the answer fit exists), else the probe."""
    source = np.full(len(pairs.pair_id), FILL_SOURCES.index("probe"), dtype=np.int8)
    if answers is not None and answers.weights is not None:
        source[answered(pairs)] = FILL_SOURCES.index("item_answers")
    source[~np.isnan(pairs.teacher)] = FILL_SOURCES.index("judged")
    return source


def filled_transferability(pairs: PairSet, pooled: np.ndarray, probe: ProbeFit,
                           answers: ItemAnswerFit | None = None) -> np.ndarray:
    """The teacher's semantic_transferability per pair; where it did not judge, the item answers'
    estimate where both items have them, the probe's for the rest (`fill_sources`)."""
    semantic = pairs.teacher.copy()
    source = fill_sources(pairs, answers)
    by_answers = source == FILL_SOURCES.index("item_answers")
    if by_answers.any():
        estimate = _answer_features(pairs.same_answers[by_answers]) @ answers.weights
        semantic[by_answers] = np.clip(estimate, 0, 1)
    missing = np.flatnonzero(source == FILL_SOURCES.index("probe"))
    for s in range(0, len(missing), 65_536):
        rows = missing[s:s + 65_536]
        semantic[rows] = _pair_features(pooled, pairs.photo[rows], pairs.live[rows]) @ probe.weights
    return semantic


def purity_scores(pairs: PairSet, cfg: TransferConfig, pooled: np.ndarray,
                  probe: ProbeFit | None, answers: ItemAnswerFit | None = None) -> np.ndarray:
    """Joint purity per pair: behaviour^(1-w) x transferability^w; behaviour alone without reasoning."""
    behaviour = behaviour_score(pairs.strength, pairs.distinct_users)
    if not cfg.use_reasoning or probe is None or probe.weights is None:
        return behaviour
    semantic = np.clip(filled_transferability(pairs, pooled, probe, answers), 1e-3, 1.0)
    w = cfg.reasoning_weight
    return behaviour ** (1 - w) * semantic ** w


def high_purity(purity: np.ndarray, cfg: TransferConfig) -> np.ndarray:
    """True for pairs at or above the configured quantile of purity."""
    return purity >= np.quantile(purity, cfg.high_purity_quantile)


# ---- module: query-aware aggregation ---------------------------------------------------------------

class QueryAggregation(torch.nn.Module):
    """Learnable queries attend over an item's chorus states (with its domain): transferable, residual.

    The chorus states are normalised and projected to `width` keys and values; a domain embedding
    is added to the keys and to the queries, so the same queries read a short video and a live
    room differently where they must. Multi-head attention pooling: each query's heads weigh the
    16 states and sum their values. Each space has `n_queries` queries; their outputs,
    concatenated, map to `dim`. Without `decompose` there is one space (the residual is None) with
    the capacity of both: 2 x n_queries queries and 2 x dim, so the ablation removes the split,
    not width.
    """

    def __init__(self, state_dim: int, cfg: TransferConfig) -> None:
        super().__init__()
        width = max(32, cfg.heads * 8)
        width -= width % cfg.heads
        self.heads, self.width = cfg.heads, width
        self.spaces = 2 if cfg.decompose else 1
        self.norm = torch.nn.LayerNorm(state_dim)
        self.keys = torch.nn.Linear(state_dim, width)
        self.values = torch.nn.Linear(state_dim, width)
        self.domain = torch.nn.Embedding(len(DOMAINS), width)
        per_space = cfg.n_queries * (2 // self.spaces)
        out_dim = cfg.dim * (2 // self.spaces)
        self.queries = torch.nn.Parameter(torch.randn(self.spaces * per_space, width) * 0.1)
        self.out = torch.nn.ModuleList(torch.nn.Linear(per_space * width, out_dim)
                                       for _ in range(self.spaces))

    def forward(self, states: torch.Tensor, domain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(transferable (B, dim), residual (B, dim) or None) for chorus states (B, n_chorus, d)."""
        b, t, _ = states.shape
        h, dh, nq = self.heads, self.width // self.heads, self.queries.shape[0]
        x = self.norm(states)
        keys = (self.keys(x) + self.domain(domain)[:, None, :]).reshape(b * t, h, dh)
        values = self.values(x).reshape(b, t, h, dh)
        # Queries of both domains at once: one matrix product per head over all items' states,
        # then each item keeps its own domain's half (far faster on CPU than per-item attention).
        queries = (self.queries[None] + self.domain.weight[:, None, :]).reshape(len(DOMAINS) * nq, h, dh)
        scores = torch.einsum("nhd,qhd->nqh", keys, queries).reshape(b, t, len(DOMAINS), nq, h)
        scores = scores.gather(2, domain.view(b, 1, 1, 1, 1).expand(b, t, 1, nq, h)).squeeze(2)
        weights = torch.softmax(scores / dh ** 0.5, dim=1)  # over the chorus states
        read = torch.einsum("btqh,bthd->bqhd", weights, values)
        per_space = read.reshape(b, self.spaces, -1)
        vectors = [head(per_space[:, s]) for s, head in enumerate(self.out)]
        return vectors[0], (vectors[1] if self.spaces == 2 else None)


def joint(transferable: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
    """The transferable + residual space: both unit vectors side by side, renormalised."""
    t = F.normalize(transferable, dim=-1)
    if residual is None:
        return t
    return F.normalize(torch.cat([t, F.normalize(residual, dim=-1)], dim=-1), dim=-1)


# ---- losses ---------------------------------------------------------------------------------------

def info_nce(query: torch.Tensor, key: torch.Tensor, key_groups: torch.Tensor, log_q: torch.Tensor | None,
             temperature: float) -> torch.Tensor:
    """Per-row InfoNCE of query i against key i, the batch's other keys as negatives.

    Keys of the positive's group (the same item, or a room of the same streamer) are not
    negatives. `log_q` (per key, log of its sampling probability) is subtracted from the logits:
    the in-batch sampling-bias correction.
    """
    logits = F.normalize(query, dim=-1) @ F.normalize(key, dim=-1).T / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    same = key_groups[None, :] == key_groups[:, None]
    logits = logits.masked_fill(same & ~torch.eye(len(key_groups), dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(key_groups)), reduction="none")


@dataclass
class BatchKeys:
    """Who is who in a batch of pairs: the short video's row, the room's streamer, both log-q."""

    photo: torch.Tensor
    streamer: torch.Tensor
    log_q_live: torch.Tensor | None
    log_q_photo: torch.Tensor | None


def symmetric_nce(photo: torch.Tensor, live: torch.Tensor, keys: BatchKeys,
                  temperature: float) -> torch.Tensor:
    """Per-pair mean of InfoNCE both ways: video -> room (other streamers' rooms as negatives) and
    room -> video (other videos as negatives)."""
    to_room = info_nce(photo, live, keys.streamer, keys.log_q_live, temperature)
    to_video = info_nce(live, photo, keys.photo, keys.log_q_photo, temperature)
    return (to_room + to_video) / 2


def routed_contrastive(photo: tuple[torch.Tensor, torch.Tensor | None],
                       live: tuple[torch.Tensor, torch.Tensor | None], high: torch.Tensor,
                       keys: BatchKeys, cfg: TransferConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The cross-domain contrastive loss with transferability routing, symmetric.

    With `routing`, high-purity pairs are matched in the transferable space and low-purity pairs
    in the joint (transferable + residual) space with the transferable half held fixed. Without
    it, every pair is matched in both (the residual is trained either way, so the ablation
    removes the routing, not the residual's training). Without a residual, every pair is matched
    in the transferable space.
    """
    in_t = symmetric_nce(photo[0], live[0], keys, cfg.temperature)
    if photo[1] is None:
        return in_t.mean(), {"transferable": in_t.mean().item()}
    # In the joint space the transferable half is held fixed (no gradient): the pair is scored
    # with both vectors, but only the residual moves to explain it, so what does not transfer
    # is absorbed there instead of bending the transferable space.
    in_joint = symmetric_nce(joint(photo[0].detach(), photo[1]), joint(live[0].detach(), live[1]), keys,
                             cfg.temperature)
    if not cfg.routing:
        return (in_t + in_joint).mean(), {"transferable": in_t.mean().item(), "joint": in_joint.mean().item()}
    per_row = torch.where(high, in_t, in_joint)
    parts = {"transferable": in_t[high].mean().item() if high.any() else 0.0,
             "joint": in_joint[~high].mean().item() if (~high).any() else 0.0}
    return per_row.mean(), parts


def domain_gap(transferable: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    """Squared norm of each domain's mean unit transferable vector in the batch, summed.

    InfoNCE cannot see a constant offset between the domains (it shifts every logit of a row
    alike), so without this term the transferable space may keep the two domains apart. Pulling
    each domain's mean to the origin (rather than only the two means together, which a narrow
    cone satisfies) spreads both domains over the same sphere.
    """
    t = F.normalize(transferable, dim=-1)
    return sum((t[domain == d].mean(dim=0) ** 2).sum() for d in range(len(DOMAINS)) if (domain == d).any())


def separation_loss(transferable: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Mean squared cosine between each item's transferable and residual vectors (0 = orthogonal)."""
    return (F.cosine_similarity(transferable, residual, dim=-1) ** 2).mean()


# ---- training --------------------------------------------------------------------------------------

def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    # Each pass's order depends only on (seed, epoch): a resumed run draws what the first would have.
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen).numpy()


def planned_steps(n_train: int, cfg: TransferConfig) -> int:
    """Most steps a fit may take: `max_epochs` passes over the training pairs, at most `steps`."""
    per_epoch = max(1, -(-n_train // cfg.batch_size))
    return max(1, min(cfg.steps, int(np.ceil(cfg.max_epochs * per_epoch))))


def _log_q(rows: np.ndarray, n: int) -> torch.Tensor:
    counts = np.bincount(rows, minlength=n).astype(np.float64)
    return torch.from_numpy(np.log(np.maximum(counts, 1) / len(rows))).float()


@torch.no_grad()
def held_out_ranking(model: QueryAggregation, states: ChorusStates, pairs: PairSet, rows: np.ndarray,
                     k: int = 10) -> dict[str, float] | None:
    """How held-out pairs rank their own room: each pair's short video ranks the held-out pairs'
    rooms in the joint space (transferable + residual; the transferable alone without
    decomposition). `percentile`: the mean share of those rooms scored below its own room (0.5 is
    chance, 1 is always first); `recall`: the share with its own room in the top k.

    The stopping metric is the percentile: behaviour pairs are noisy (on the demo world most pairs
    join items of different topics), so the own room of most pairs cannot reach a top 10 even in a
    topic-aligned space and recall@10 stays near chance while the ranking improves (docs/method.md).
    Pairs before the cut, never test data."""
    if len(rows) < 2:
        return None
    was_training = model.training
    model.eval()
    photos, photo_at = np.unique(pairs.photo[rows], return_inverse=True)
    rooms, room_at = np.unique(pairs.live[rows], return_inverse=True)
    p = joint(*model(states.take(photos), torch.zeros(len(photos), dtype=torch.long)))
    r = joint(*model(states.take(rooms), torch.ones(len(rooms), dtype=torch.long)))
    scores = p[torch.from_numpy(photo_at)] @ r.T
    own = scores.gather(1, torch.from_numpy(room_at)[:, None])
    above = (scores > own).sum(dim=1)
    model.train(was_training)
    return {"percentile": float(1 - above.float().mean() / max(1, len(rooms) - 1)),
            "recall": float((above < k).float().mean())}


def train(model: QueryAggregation, states: ChorusStates, pairs: PairSet, high: np.ndarray,
          cfg: TransferConfig, checkpoints=None, on_step: Callable[[int, float], None] | None = None
          ) -> tuple[list[float], dict]:
    """Train `model` in passes over the training pairs, stopped on the held-out pairs' recall;
    returns the loss per step and the stopping record (the model ends with its best weights).

    Every `eval_every` steps the held-out ranking (`held_out_ranking`, on up to `eval_pairs`
    held-out pairs) is measured; training stops after `patience` measurements without a gain in
    its mean percentile, or after
    `planned_steps`. `checkpoints` is a `rgcd.training.checkpoint.Checkpointer`: the state is
    saved every `checkpoint_every` steps and a run resumes from the latest one. `on_step(step,
    loss)` is called after each step (progress; tests use it to stop a run mid-way as a kill would).
    """
    import copy

    train_rows = np.flatnonzero(~pairs.held_out)
    if len(train_rows) < 2:
        raise InputError(f"only {len(train_rows)} training pairs: stage 2 needs behaviour pairs "
                         "before the cut")
    held = np.flatnonzero(pairs.held_out)
    eval_rows = held[np.linspace(0, len(held) - 1, min(len(held), cfg.eval_pairs)).astype(np.int64)] \
        if len(held) else held
    photo_rows, live_rows = pairs.photo[train_rows], pairs.live[train_rows]
    streamer = pairs.streamer[train_rows] if pairs.streamer is not None else live_rows
    high_t = torch.from_numpy(high[train_rows])
    log_q_live = _log_q(live_rows, len(states)) if cfg.logq_correction else None
    log_q_photo = _log_q(photo_rows, len(states)) if cfg.logq_correction else None
    torch.manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    losses: list[float] = []
    # history rows: [step, held-out percentile, held-out recall@10, mean loss and mean gradient norm
    # over the steps since the previous row]
    grad_norms: list[float] = []
    record: dict = {"metric": "held-out mean percentile of the own room", "history": [], "best_step": 0,
                    "best": None, "stale": 0, "stopped": "planned steps"}
    best_state = copy.deepcopy(model.state_dict())
    start = 0
    saved = checkpoints.load() if checkpoints is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        losses, start = list(saved["losses"]), int(saved["step"])
        record, best_state = saved["record"], saved["best_model"]
    total = planned_steps(len(train_rows), cfg)
    per_epoch = max(1, -(-len(train_rows) // cfg.batch_size))
    order, order_epoch = None, -1
    model.train()
    for step in range(start, total):
        epoch, k = divmod(step, per_epoch)
        if epoch != order_epoch:
            order, order_epoch = _epoch_order(cfg.seed, epoch, len(train_rows)), epoch
        b = order[k * cfg.batch_size:(k + 1) * cfg.batch_size]
        # under torchrun each rank encodes its share of the batch and gathers the whole batch back
        mine = distributed.part(b)
        p = distributed.gather_outputs(model(states.take(photo_rows[mine]),
                                               torch.zeros(len(mine), dtype=torch.long)), len(b))
        lv = distributed.gather_outputs(model(states.take(live_rows[mine]),
                                                torch.ones(len(mine), dtype=torch.long)), len(b))
        live_ids, photo_ids = torch.from_numpy(live_rows[b]), torch.from_numpy(photo_rows[b])
        keys = BatchKeys(photo_ids, torch.from_numpy(streamer[b]),
                         log_q_live[live_ids] if log_q_live is not None else None,
                         log_q_photo[photo_ids] if log_q_photo is not None else None)
        loss, _ = routed_contrastive(p, lv, high_t[b], keys, cfg)
        if cfg.separation and p[1] is not None:
            loss = loss + cfg.separation_weight * separation_loss(torch.cat([p[0], lv[0]]),
                                                                  torch.cat([p[1], lv[1]]))
        if cfg.domain_alignment_weight:
            both = torch.cat([torch.zeros(len(b), dtype=torch.long), torch.ones(len(b), dtype=torch.long)])
            loss = loss + cfg.domain_alignment_weight * domain_gap(torch.cat([p[0], lv[0]]), both)
        opt.zero_grad()
        loss.backward()
        distributed.average_gradients(model)  # under torchrun: the same step on every rank
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))))
        opt.step()
        losses.append(loss.item())
        done = step + 1
        if done % cfg.eval_every == 0 or done == total:
            ranking = held_out_ranking(model, states, pairs, eval_rows)
            score = None if ranking is None else ranking["percentile"]
            record["history"].append([done, None if ranking is None else round(ranking["percentile"], 5),
                                      None if ranking is None else round(ranking["recall"], 5),
                                      round(float(np.mean(losses[-cfg.eval_every:])), 4),
                                      round(float(np.mean(grad_norms[-cfg.eval_every:])), 4) if grad_norms
                                      else None])
            if score is not None and (record["best"] is None or score > record["best"] + 1e-4):
                record.update(best=score, best_step=done, stale=0)
                best_state = copy.deepcopy(model.state_dict())
            else:
                record["stale"] += 1
        stop = record["stale"] >= cfg.patience
        if stop:
            record["stopped"] = f"no held-out gain in {cfg.patience} measurements"
        if checkpoints is not None:
            checkpoints.maybe_save(done, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                          "losses": losses, "record": record, "best_model": best_state})
        if on_step is not None:
            on_step(done, losses[-1])
        if stop:
            break
    if record["best"] is not None:
        model.load_state_dict(best_state)
    record["epochs"] = round(len(losses) / per_epoch, 2)
    model.eval()
    return losses, record


# ---- encoding --------------------------------------------------------------------------------------

@torch.no_grad()
def encode_items(model: QueryAggregation, chorus_states: np.ndarray | torch.Tensor,
                 domains: np.ndarray | list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(transferable, residual) unit vectors for items' chorus states (n, n_chorus, d) and domains.

    The callable for a room going on air: its chorus states from the student, domain 'live'.
    Residual is None for a model without decomposition.
    """
    model.eval()
    dom = np.array([DOMAINS.index(d) if isinstance(d, str) else int(d) for d in domains], dtype=np.int64)
    t, r = model(torch.as_tensor(np.asarray(chorus_states, dtype=np.float32)), torch.from_numpy(dom))
    return (F.normalize(t, dim=-1).numpy(), None if r is None else F.normalize(r, dim=-1).numpy())


def encode_all(model: QueryAggregation, states: ChorusStates, chunk: int, path: Path) -> None:
    """Both vectors of every item in the chorus states, chunk by chunk, written to `path` as each
    chunk is done (tensors `transferable` and, with decomposition, `residual`; rows as the states';
    read back with `rgcd.training.rows_on_disk.RowsOnDisk`): the pass holds one chunk, never the
    catalogue's vectors (the chunk's temporaries are its peak: 0.53 GiB of RSS with 512 items, 0.90
    with 4,096, as fast; the heap they leave is trimmed)."""
    from rgcd.memory import trim_heap

    writer: RowsWriter | None = None
    try:
        for s in range(0, max(len(states), 1), chunk):
            rows = np.arange(s, min(s + chunk, len(states)))
            t, r = encode_items(model, states.take(rows), states.domains[rows])
            if writer is None:
                shapes = {"transferable": (len(states), t.shape[1])}
                if r is not None:
                    shapes["residual"] = (len(states), r.shape[1])
                writer = RowsWriter(path, shapes)
            writer.write("transferable", s, t)
            if r is not None:
                writer.write("residual", s, r)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    assert writer is not None
    writer.close()
    trim_heap()


# ---- held-out alignment ---------------------------------------------------------------------------

def _mean_cos(a: np.ndarray, b: np.ndarray) -> float | None:
    return float((a * b).sum(axis=1).mean()) if len(a) else None


def alignment(transferable: np.ndarray | RowsOnDisk, residual: np.ndarray | RowsOnDisk | None, pairs: PairSet,
              high: np.ndarray, seed: int) -> dict[str, dict[str, float | None]]:
    """Mean cosine of held-out high-purity, low-purity and random (photo, room) pairs, per space
    (the vectors read for the held-out pairs' rows only)."""
    held = pairs.held_out
    rng = np.random.default_rng(seed)
    rand_live = rng.choice(pairs.live[held], size=int(held.sum())) if held.any() else pairs.live[:0]

    def joint_rows(rows: np.ndarray) -> np.ndarray:
        assert residual is not None
        return np.hstack([transferable[rows], residual[rows]]) / np.sqrt(2)

    spaces: dict[str, Callable[[np.ndarray], np.ndarray]] = {"transferable": lambda rows: transferable[rows]}
    if residual is not None:
        spaces["residual"] = lambda rows: residual[rows]
        spaces["joint"] = joint_rows
    out = {}
    for name, vec in spaces.items():
        out[name] = {
            "high_purity": _mean_cos(vec(pairs.photo[held & high]), vec(pairs.live[held & high])),
            "low_purity": _mean_cos(vec(pairs.photo[held & ~high]), vec(pairs.live[held & ~high])),
            "random": _mean_cos(vec(pairs.photo[held]), vec(rand_live)),
        }
    return out
