"""Unified contrastive embedding of both domains, without decomposition (UniEmbedding-style).

In the spirit of UniEmbedding (user-view contrastive learning of one item space shared by all
domains): users, short videos and live authors live in one `dim`-d space. An item's vector is
its id embedding plus a domain-specific linear projection of its multimodal vector (photo 128-d,
live author = mean of its rooms' 64-d vectors), so content shapes the space too. Training is
InfoNCE over (user, item) positives of *both* domains mixed in each batch, the other items of
the batch as negatives, on unit vectors with a fixed temperature; popular items are more often
in-batch negatives, so their logits are corrected by log(sampling probability) as industrial
two-tower training does (switch: `logq_correction`). A user with short-video history
but no live history is still placed in the space, which is how interest crosses domains.
There is one vector per item: no transferable / residual split (that is the full method).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from rgcd.training.recommender import (
    IndexedVectors,
    ItemCatalog,
    TrainData,
    VectorScorer,
    indexed_pairs,
    training_batches,
)


@dataclass
class UniEmbedConfig:
    """Small fixed budget; common defaults, not tuned."""

    dim: int = 32
    samples: int = 2**19  # training rows drawn in all; each costs a row of in-batch logits
    batch_size: int = 1024
    lr: float = 0.01
    temperature: float = 0.1
    logq_correction: bool = True  # in-batch softmax sampling-bias correction (Yi et al., RecSys 2019)
    rooms_per_author: int = 5


def _content_matrix(catalog: ItemCatalog, keys: list[str], rooms_per_author: int) -> dict[str, np.ndarray]:
    """Per domain, a (len(keys), d) matrix of multimodal vectors (zeros where an item has none);
    a live author's row is the mean of its `rooms_per_author` latest rooms."""
    row_of = pl.DataFrame({"key": keys, "row": np.arange(len(keys), dtype=np.int64)})
    content = catalog.content.filter(pl.col("mm_embedding").is_not_null())
    photos = (content.filter(pl.col("domain") == "photo")
              .select(pl.col("item_id").alias("key"), "mm_embedding"))
    rooms = catalog.author_rooms().filter(pl.col("mm_embedding").is_not_null())
    if "start_timestamp" in rooms.columns:
        rooms = rooms.sort("start_timestamp", descending=True)
    rooms = (rooms.group_by("author_id", maintain_order=True).head(rooms_per_author)
             .select((pl.lit("author:") + pl.col("author_id").cast(pl.Utf8)).alias("key"), "mm_embedding"))
    out = {}
    for domain, table in (("photo", photos), ("live", rooms)):
        if table.is_empty():
            continue
        dim = len(table["mm_embedding"][0])
        table = table.join(row_of, on="key")
        rows = table["row"].to_numpy()
        vectors = table["mm_embedding"].explode().to_numpy().astype(np.float32).reshape(-1, dim)
        total = np.zeros((len(keys), dim), dtype=np.float64)
        np.add.at(total, rows, vectors)
        count = np.bincount(rows, minlength=len(keys))[:, None]
        out[domain] = (total / np.maximum(count, 1)).astype(np.float32)
    return out


class ItemTower(torch.nn.Module):
    """id embedding + a linear projection per content group (uniembed: one per domain's vector).

    `content` maps a group name to a (n_items, d) matrix in key order (zeros where a key has none).
    """

    def __init__(self, n_items: int, dim: int, content: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.ids = torch.nn.Embedding(n_items, dim)
        torch.nn.init.normal_(self.ids.weight, std=0.1)
        self.content = {d: torch.from_numpy(m) for d, m in content.items()}
        self.proj = torch.nn.ModuleDict({d: torch.nn.Linear(m.shape[1], dim, bias=False)
                                         for d, m in content.items()})

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.encode(idx, {d: m[idx] for d, m in self.content.items()})

    def encode(self, idx: torch.Tensor, content: dict[str, torch.Tensor]) -> torch.Tensor:
        """The tower on given content rows; idx -1 = an item without an id embedding (new)."""
        known = idx >= 0
        out = self.ids(idx.clamp(min=0)) * known[:, None]
        for d, proj in self.proj.items():
            out = out + proj(content[d])
        return out


def mask_shared_items(logits: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """-inf where row r's item appears in another column c: several rows of a batch may share an
    item, and those are positives too, not negatives. Built from the few repeated items only,
    not a batch x batch comparison (that was a sixth of a training step); written into `logits`
    in place (its producer, a matrix product, does not need it for its gradient), since a copy
    of the batch x batch logits and its backward were a tenth of a step."""
    _, group, counts = torch.unique(items, return_inverse=True, return_counts=True)
    repeated = (counts[group] > 1).nonzero().squeeze(1)
    if len(repeated) == 0:
        return logits
    g = group[repeated]
    same = (g[:, None] == g[None, :]) & (repeated[:, None] != repeated[None, :])
    rows, cols = same.nonzero(as_tuple=True)
    return logits.index_put_((repeated[rows], repeated[cols]), torch.tensor(float("-inf")))


def batch_logits(users: torch.Tensor, items: torch.Tensor, temperature: float,
                 log_q: torch.Tensor | None) -> torch.Tensor:
    """users @ items.T / temperature - log_q (per column), as one matrix product: the temperature
    scales the (B, d) user rows and log_q enters as the product's bias, so no (B, B) division or
    subtraction runs forward or backward."""
    scaled = users * (1.0 / temperature)
    if log_q is None:
        return scaled @ items.T
    return torch.addmm(-log_q[None, :], scaled, items.T)


class UniEmbed(VectorScorer):
    """One contrastive space for users, short videos and live authors (see module doc)."""

    name = "uniembed"

    def __init__(self, config: UniEmbedConfig | None = None) -> None:
        super().__init__()
        self.config = config or UniEmbedConfig()
        self.tower: ItemTower | None = None
        self.key_index: dict[str, int] = {}

    def item_content(self, data: TrainData, keys: list[str]) -> dict[str, np.ndarray]:
        """The item tower's content input per key: the multimodal vectors (the full method
        overrides this with its stage-2 vectors; nothing else differs)."""
        return _content_matrix(data.catalog, keys, self.config.rooms_per_author)

    def fit(self, data: TrainData, seed: int) -> None:
        """InfoNCE on (user, item) pairs of both domains; in-batch negatives."""
        cfg = self.config
        self.catalog = data.catalog
        user_ids, keys, u, i = indexed_pairs(data.interactions)
        k_index = {k: i for i, k in enumerate(keys)}

        log_q = torch.log(torch.bincount(i, minlength=len(keys)).float() / len(i))

        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        users = torch.nn.Embedding(len(user_ids), cfg.dim)
        torch.nn.init.normal_(users.weight, std=0.1, generator=gen)
        items = ItemTower(len(keys), cfg.dim, self.item_content(data, keys))
        opt = torch.optim.Adam([*users.parameters(), *items.parameters()], lr=cfg.lr, fused=True)
        for b in training_batches(len(u), cfg.samples, cfg.batch_size, gen):
            ub = F.normalize(users(u[b]), dim=-1)
            ib = F.normalize(items(i[b]), dim=-1)
            logits = batch_logits(ub, ib, cfg.temperature, log_q[i[b]] if cfg.logq_correction else None)
            logits = mask_shared_items(logits, i[b])
            loss = F.cross_entropy(logits, torch.arange(len(b)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.tower, self.key_index = items, k_index
        with torch.no_grad():
            self.users = IndexedVectors([str(x) for x in user_ids], F.normalize(users.weight, dim=-1).numpy())
            all_items = F.normalize(items(torch.arange(len(keys))), dim=-1).numpy()
        self.items = IndexedVectors(keys, all_items)

    def item_vectors(self) -> tuple[list[str], np.ndarray]:
        """Every learned item vector (short videos and live authors), for the projection plot."""
        assert self.items is not None, "fit first"
        return self.items.ids, self.items.vectors
