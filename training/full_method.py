"""The full method in the yardstick: uniembed's two-tower retriever fed with stage-2 item vectors.

`RGCD` is `rgcd.training.baselines.uniembed.UniEmbed` with one change, its item input: where uniembed's
item tower projects the raw multimodal vectors (photo 128-d, live 64-d, two unrelated spaces),
this one projects the stage-2 vectors of `rgcd.training.decomposition`: the transferable vector through
one projection shared by both domains, the residual through one projection per domain. Users,
id embeddings, loss, budget and seeds are uniembed's, so the comparison isolates the
representation, as the paper's does.

Scoring differs where the representation allows it: a live room is scored by its OWN stage-2
vectors (plus its author's id embedding when the author was seen in training), so a room that
did not exist in training still has a vector; uniembed scores a room through its author's mean
content. Cold-start users (no live history) are placed in the space by their short-video
interactions, as in uniembed.

The stage-2 model is fitted at the protocol's cut on behaviour pairs whose last co-engagement
is before it (`protocol_cut`), through `rgcd.training.stage2.fit_at` (cached by config and
inputs, so the 3 seeds and the two protocols reuse fits; the stage-2 seed is transfer.seed,
fixed: the seeds vary the downstream retriever).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rgcd.training.baselines.uniembed import UniEmbed, UniEmbedConfig
from rgcd.training.recommender import IndexedVectors, TrainData, dot_scores


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
    residual split by domain (one projection each), zeros where a group does not apply."""
    groups = {"transferable": np.asarray(transferable, dtype=np.float32)}
    if residual is not None:
        photo = is_photo[:, None]
        groups["residual_photo"] = np.where(photo, residual, 0.0).astype(np.float32)
        groups["residual_live"] = np.where(photo, 0.0, residual).astype(np.float32)
    return groups


class RGCD(UniEmbed):
    """uniembed's retriever over stage-2 item vectors (see the module docstring)."""

    def __init__(self, name: str, vectors_for: Callable[[TrainData], Stage2Vectors],
                 config: UniEmbedConfig | None = None) -> None:
        super().__init__(config)
        self.name = name
        self.vectors_for = vectors_for
        self.stage2: Stage2Vectors | None = None
        self._author_rows: dict[str, list[int]] = {}

    def fit(self, data: TrainData, seed: int) -> None:
        """Stage-2 vectors at this protocol's cut, then uniembed's training on top of them."""
        self.stage2 = self.vectors_for(data)
        rooms = data.catalog.author_rooms()
        if "start_timestamp" in rooms.columns:
            rooms = rooms.sort("start_timestamp", descending=True)
        rooms = rooms.group_by("author_id", maintain_order=True).head(self.config.rooms_per_author)
        self._author_rows = {}
        for author, item in zip(rooms["author_id"].to_list(), rooms["item_id"].to_list(), strict=True):
            if item in self.stage2.row:
                self._author_rows.setdefault(f"author:{author}", []).append(self.stage2.row[item])
        super().fit(data, seed)

    def _content_rows(self, ids: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Item-tower input per id: an author = mean over its recent rooms; (groups, has content)."""
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
            total = np.zeros((len(ids), matrix.shape[1]), dtype=np.float64)
            np.add.at(total, at, matrix[take])
            return (total / np.maximum(count, 1)[:, None]).astype(np.float32)

        is_photo = np.array([i.startswith("photo:") for i in ids], dtype=bool)
        groups = tower_groups(mean_of(t_all), mean_of(r_all) if r_all is not None else None, is_photo)
        return groups, count > 0

    def item_content(self, data: TrainData, keys: list[str]) -> dict[str, np.ndarray]:
        """Stage-2 vectors instead of the multimodal vectors: the one difference from uniembed."""
        return self._content_rows(keys)[0]

    @torch.no_grad()
    def retrieval_vectors(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unit item-tower vectors of any items (a room by its own vectors); (vectors, known)."""
        assert self.tower is not None and self.catalog is not None, "fit first"
        keys = self.catalog.cf_keys(item_ids)
        idx = torch.tensor([self.key_index.get(k, -1) for k in keys], dtype=torch.long)
        groups, has = self._content_rows(item_ids)
        out = F.normalize(self.tower.encode(idx, {g: torch.from_numpy(m) for g, m in groups.items()}), dim=-1)
        return out.numpy(), has | (idx.numpy() >= 0)

    def score(self, user_ids: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """User x item dot products; rooms by their own stage-2 vectors."""
        assert self.users is not None, "fit first"
        uv, uk = self.users.take([str(int(x)) for x in user_ids])
        iv, ik = self.retrieval_vectors(item_ids)
        return dot_scores(uv, uk, iv, ik)

    def user_vectors(self) -> IndexedVectors:
        """The user tower's unit vectors, by str(user_id)."""
        assert self.users is not None, "fit first"
        return self.users








