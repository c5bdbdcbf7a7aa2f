"""The full method in the yardstick: uniembed's two-tower retriever with the stage-2 vectors added.

`RGCD` is `rgcd.training.baselines.uniembed.UniEmbed` with more item input: everything uniembed's
item tower reads (id embeddings, one creator embedding per author_id, the raw multimodal vectors
through a projection per domain) plus the stage-2 vectors of `rgcd.training.decomposition`: the
transferable vector through ONE projection shared by both domains, the residual through one
projection per domain. Users, loss, negatives, budget and seeds are uniembed's, so a difference
between the two is what the method adds.

Live positives are trained and scored alike, room by room (`room_level`): a room is its
streamer's id embedding plus the room's own raw and stage-2 vectors, whether it is a positive in
training or a candidate at test time; a room that did not exist in training, or whose streamer
was never seen, still has its content. Id dropout (`retriever_id_dropout`) trains that content
path to stand alone. Cold-start users (no live history) are placed by their short videos; they
reach rooms through what both domains share in the tower: the creator identity and the
transferable projection. `rgcd-no-stage2` is this retriever without the stage-2 vectors (room
level, id dropout, uniembed's inputs): its difference to `rgcd` is what stage 1 and stage 2 add.

The stage-2 model is fitted at the protocol's cut on behaviour pairs whose last co-engagement
is before it (`rgcd.training.full_method_fits.protocol_cut`), through `rgcd.training.stage2.fit_at`
(cached by config and inputs, so the 3 seeds and the two protocols reuse fits; the stage-2 seed is
transfer.seed, fixed: the seeds vary the downstream retriever).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rgcd.training.baselines.uniembed import UniEmbed, UniEmbedConfig
from rgcd.training.recommender import ItemCatalog, TrainData, sum_rows_by


@dataclass
class Stage2Vectors:
    """Stage-2 vectors per item id (both domains): rows of `transferable` / `residual`."""

    item_ids: list[str]
    transferable: np.ndarray
    residual: np.ndarray | None
    model_version: str

    def __post_init__(self) -> None:
        self.row = {item: i for i, item in enumerate(self.item_ids)}


def tower_groups(transferable: np.ndarray, residual: np.ndarray | None,
                 is_photo: np.ndarray) -> dict[str, np.ndarray]:
    """The item tower's content groups: transferable (one projection for both domains), and the
    residual split by domain (one projection each), zeros where a group does not apply.

    Without decomposition (`residual` None) the one vector goes through the shared projection and
    through a projection per domain as well: the tower keeps its shared and its per-domain paths,
    so the ablation removes the split that stage 2 learns, not a path of the retriever."""
    groups = {"transferable": np.asarray(transferable, dtype=np.float32)}
    per_domain, name = (residual, "residual") if residual is not None else (transferable, "single")
    photo = is_photo[:, None]
    groups[f"{name}_photo"] = np.where(photo, per_domain, 0.0).astype(np.float32)
    groups[f"{name}_live"] = np.where(photo, 0.0, per_domain).astype(np.float32)
    return groups


def retriever_config(settings) -> UniEmbedConfig:
    """The full method's retriever: uniembed's budget and switches, live items room by room, ids
    dropped as `transfer.retriever_id_dropout` says."""
    ev = settings.evaluation
    return UniEmbedConfig(dim=ev.dim, samples=ev.contrastive_samples, room_level=True,
                          id_dropout=settings.transfer.retriever_id_dropout)


class RGCD(UniEmbed):
    """uniembed's retriever with the stage-2 vectors added to its item input (see the module doc)."""

    def __init__(self, name: str, vectors_for: Callable[[TrainData], Stage2Vectors | None],
                 config: UniEmbedConfig | None = None) -> None:
        super().__init__(config or UniEmbedConfig(room_level=True))
        self.name = name
        self.vectors_for = vectors_for
        self.stage2: Stage2Vectors | None = None
        self._author_rows: dict[str, list[int]] = {}

    def fit(self, data: TrainData, seed: int) -> None:
        """Stage-2 vectors at this protocol's cut, then uniembed's training with them as more input."""
        self.stage2 = self.vectors_for(data)
        self._author_rows = {}
        if self.stage2 is None:  # rgcd-no-stage2: the same retriever on uniembed's inputs alone
            super().fit(data, seed)
            return
        rooms = data.catalog.author_rooms()
        if "start_timestamp" in rooms.columns:
            rooms = rooms.sort("start_timestamp", "item_id", descending=[True, False])
        rooms = rooms.group_by("author_id", maintain_order=True).head(self.config.rooms_per_author)
        self._author_rows = {}
        for author, item in zip(rooms["author_id"].to_list(), rooms["item_id"].to_list(), strict=True):
            if item in self.stage2.row:
                self._author_rows.setdefault(f"author:{author}", []).append(self.stage2.row[item])
        super().fit(data, seed)

    def stage2_content(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stage-2 groups per id: an item's own vectors; an author key (klm3-cdr's live items)
        the mean over its recent rooms before the cut; zeros where there are none."""
        assert self.stage2 is not None
        t_all, r_all = self.stage2.transferable, self.stage2.residual
        pos: list[int] = []  # (position in ids, stage-2 row) pairs, averaged per position
        rows: list[int] = []
        for j, item in enumerate(ids):
            found = (self._author_rows.get(item) if item.startswith("author:")
                     else [self.stage2.row[item]] if item in self.stage2.row else None)
            if found:
                pos.extend([j] * len(found))
                rows.extend(found)
        at, take = np.asarray(pos, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        count = np.bincount(at, minlength=len(ids))

        def mean_of(matrix: np.ndarray) -> np.ndarray:
            total = sum_rows_by(at, matrix[take], len(ids))  # stage 2's rows come from disk by row
            return (total / np.maximum(count, 1)[:, None]).astype(np.float32)

        is_photo = np.array([i.startswith("photo:") for i in ids], dtype=bool)
        return tower_groups(mean_of(t_all), mean_of(r_all) if r_all is not None else None, is_photo)

    def item_content(self, catalog: ItemCatalog, keys: list[str]) -> dict[str, np.ndarray]:
        """uniembed's inputs (the raw multimodal vectors) plus the stage-2 vectors, if any."""
        raw = super().item_content(catalog, keys)
        return raw if self.stage2 is None else {**raw, **self.stage2_content(keys)}
