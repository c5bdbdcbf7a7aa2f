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

from collections.abc import Sequence
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
    dot_scores,
    indexed_pairs,
    sum_rows_by,
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
    # A live positive's negatives are live items only, a short video's short videos only: mixed,
    # a user with short-video history only is pushed away from every live item (a cold-start
    # user's whole live ranking then rests on how far each streamer was pushed).
    own_domain_negatives: bool = True
    # One embedding per author_id shared by both domains: a short-video creator and the streamer
    # of the same id are one person, so a user's plays of a creator reach that creator's rooms.
    creator_identity: bool = True
    # Live positives keyed by the entered room (its streamer's id embedding + the room's own
    # content) instead of by the streamer: trained and scored alike, room by room.
    room_level: bool = False
    # Share of training rows whose id (and, independently, creator) embedding is dropped, so the
    # content path learns to rank an item whose id it never saw (a new streamer's room).
    id_dropout: float = 0.0
    # A learned vector per domain added to every item of that domain. Scores are cosines of unit
    # vectors, so without it a domain has no shared direction of its own: measured on the demo world
    # (live-room NDCG@10, 3 seeds), the room-level retriever without stage-2 vectors 0.058, with this
    # offset alone 0.095, with the stage-2 vectors (whose near-constant residual plays this part) 0.093.
    domain_offset: bool = True


def domain_columns(is_photo: np.ndarray) -> dict[str, np.ndarray]:
    """The per-domain offset as content groups: a one-column indicator per domain, whose (bias-free)
    projection in the item tower is that domain's learned vector."""
    photo = np.asarray(is_photo, dtype=bool)[:, None]
    return {"domain_photo": photo.astype(np.float32), "domain_live": (~photo).astype(np.float32)}


def creator_map(catalog: ItemCatalog) -> dict[str, int]:
    """item_id -> author_id of every item in the catalogue (short videos and rooms)."""
    content = catalog.content.select("item_id", "author_id").drop_nulls()
    return dict(zip(content["item_id"].to_list(), content["author_id"].to_list(), strict=True))


def creator_of(item: str, creators: dict[str, int]) -> int | None:
    """The author_id behind an item id, an author key ('author:<id>') included."""
    if item.startswith("author:"):
        return int(item.split(":", 1)[1])
    return creators.get(item)


def _content_matrix(catalog: ItemCatalog, keys: list[str], rooms_per_author: int) -> dict[str, np.ndarray]:
    """Per domain, a (len(keys), d) matrix of multimodal vectors (zeros where an item has none).

    A short video or a room is its own vector (a room's content exists from its start); a live
    author's row is the mean of its `rooms_per_author` latest rooms before the cut."""
    if "mm_embedding" not in catalog.content.columns:
        return {}
    row_of = pl.DataFrame({"key": keys, "row": np.arange(len(keys), dtype=np.int64)})
    content = catalog.content.filter(pl.col("mm_embedding").is_not_null()).select("item_id", "domain",
                                                                                   "mm_embedding")
    own = content.rename({"item_id": "key"}).join(row_of, on="key")
    tables = {d: own.filter(pl.col("domain") == d) for d in ("photo", "live")}
    if any(k.startswith("author:") for k in keys):
        rooms = catalog.author_rooms().filter(pl.col("mm_embedding").is_not_null())
        if "start_timestamp" in rooms.columns:
            rooms = rooms.sort("start_timestamp", "item_id", descending=[True, False])
        authors = (rooms.group_by("author_id", maintain_order=True).head(rooms_per_author)
                   .select((pl.lit("author:") + pl.col("author_id").cast(pl.Utf8)).alias("key"), "domain",
                           "mm_embedding").join(row_of, on="key"))
        tables["live"] = pl.concat([tables["live"], authors])
    out = {}
    for domain, table in tables.items():
        if table.is_empty():
            continue
        dim = len(table["mm_embedding"][0])
        rows = table["row"].to_numpy()
        vectors = table["mm_embedding"].explode().to_numpy().astype(np.float32).reshape(-1, dim)
        total = sum_rows_by(rows, vectors, len(keys))
        count = np.bincount(rows, minlength=len(keys))[:, None]
        out[domain] = (total / np.maximum(count, 1)).astype(np.float32)
    return out


class ItemTower(torch.nn.Module):
    """id embedding + creator embedding + a linear projection per content group.

    A key's id row is its collaborative identity (a short video, or a live streamer: all rooms of
    one streamer share it); its creator row is its author_id, one per person across both domains.
    `content` maps a group name to a (n_keys, d) matrix in key order (zeros where a key has none).
    """

    def __init__(self, n_ids: int, n_creators: int, dim: int, content: dict[str, np.ndarray],
                 id_rows: np.ndarray, creator_rows: np.ndarray) -> None:
        super().__init__()
        self.ids = torch.nn.Embedding(max(1, n_ids), dim)
        torch.nn.init.normal_(self.ids.weight, std=0.1)
        self.creators = torch.nn.Embedding(n_creators, dim) if n_creators else None
        if self.creators is not None:
            torch.nn.init.normal_(self.creators.weight, std=0.1)
        self.content = {d: torch.from_numpy(m) for d, m in content.items()}
        self.id_rows = torch.as_tensor(id_rows, dtype=torch.long)
        self.creator_rows = torch.as_tensor(creator_rows, dtype=torch.long)
        self.proj = torch.nn.ModuleDict({d: torch.nn.Linear(m.shape[1], dim, bias=False)
                                         for d, m in content.items()})

    def forward(self, idx: torch.Tensor, id_dropout: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        ids, creators = self.id_rows[idx], self.creator_rows[idx]
        if id_dropout > 0:  # training only: whole rows lose their id / creator, content stays
            ids = ids.masked_fill(torch.rand(len(idx), generator=generator) < id_dropout, -1)
            creators = creators.masked_fill(torch.rand(len(idx), generator=generator) < id_dropout, -1)
        return self.encode(ids, creators, {d: m[idx] for d, m in self.content.items()})

    def encode(self, ids: torch.Tensor, creators: torch.Tensor,
               content: dict[str, torch.Tensor]) -> torch.Tensor:
        """The tower on given id rows, creator rows and content rows; -1 = no such embedding."""
        known = ids >= 0
        out = self.ids(ids.clamp(min=0)) * known[:, None]
        if self.creators is not None:
            out = out + self.creators(creators.clamp(min=0)) * (creators >= 0)[:, None]
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


_ROOM_FRAME: list = [None, None]  # (weak reference to an interactions frame, its room-keyed copy)


def room_keyed(interactions: pl.DataFrame) -> pl.DataFrame:
    """`interactions` with each live positive keyed by its own item (the room) instead of its
    streamer; the last answer is kept, so the seeds of one model on one split build it once."""
    import weakref

    ref, cached = _ROOM_FRAME
    if ref is not None and ref() is interactions:
        return cached
    out = interactions.with_columns(pl.col("item_id").alias("key"))
    _ROOM_FRAME[:] = [weakref.ref(interactions), out]
    return out


def own_domain_only(logits: torch.Tensor, is_live: torch.Tensor) -> torch.Tensor:
    """-inf where a column's domain is not its row's: a live positive competes with live items only
    (in place, like `mask_shared_items`)."""
    return logits.masked_fill_(is_live[:, None] != is_live[None, :], float("-inf"))


class UniEmbed(VectorScorer):
    """One contrastive space for users, short videos and live authors (see module doc)."""

    name = "uniembed"

    def __init__(self, config: UniEmbedConfig | None = None) -> None:
        super().__init__()
        self.config = config or UniEmbedConfig()
        self.tower: ItemTower | None = None
        self.key_index: dict[str, int] = {}
        self.id_index: dict[str, int] = {}
        self.creator_index: dict[int, int] = {}
        self._creators: dict[str, int] = {}
        self._scored: dict[str, np.ndarray] = {}

    def item_content(self, catalog: ItemCatalog, keys: list[str]) -> dict[str, np.ndarray]:
        """The item tower's content input per key: the multimodal vectors and the domain offset (the
        full method adds its stage-2 vectors to these; nothing else differs)."""
        content = _content_matrix(catalog, keys, self.config.rooms_per_author)
        if self.config.domain_offset:
            content.update(domain_columns(np.array([k.startswith("photo:") for k in keys], dtype=bool)))
        return content

    def tower_key(self, item_id: str) -> str:
        """The key an item is trained and scored as: a room is its streamer (author level) or
        itself (`room_level`)."""
        if item_id.startswith("live:") and not self.config.room_level:
            return self.catalog.cf_keys([item_id])[0]
        return item_id

    def _id_and_creator_rows(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = [self.id_index.get(k, -1) for k in self.catalog.cf_keys(keys)]
        creators = [self.creator_index.get(c, -1) if (c := creator_of(k, self._creators)) is not None else -1
                    for k in keys]
        return np.asarray(ids, dtype=np.int64), np.asarray(creators, dtype=np.int64)

    def fit(self, data: TrainData, seed: int) -> None:
        """InfoNCE on (user, item) pairs of both domains; in-batch negatives of the positive's domain."""
        cfg = self.config
        self.catalog = data.catalog
        self._creators = creator_map(data.catalog) if cfg.creator_identity else {}
        self._scored = {}
        frame = room_keyed(data.interactions) if cfg.room_level else data.interactions
        user_ids, keys, u, i = indexed_pairs(frame)
        self.key_index = {k: n for n, k in enumerate(keys)}
        self.id_index = {k: n for n, k in enumerate(sorted(set(data.catalog.cf_keys(keys))))}
        authors = sorted({c for k in keys if (c := creator_of(k, self._creators)) is not None})
        self.creator_index = {a: n for n, a in enumerate(authors)}
        id_rows, creator_rows = self._id_and_creator_rows(keys)
        is_live = torch.tensor([not k.startswith("photo:") for k in keys], dtype=torch.bool)

        log_q = torch.log(torch.bincount(i, minlength=len(keys)).float() / len(i))

        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        users = torch.nn.Embedding(len(user_ids), cfg.dim)
        torch.nn.init.normal_(users.weight, std=0.1, generator=gen)
        items = ItemTower(len(self.id_index), len(self.creator_index), cfg.dim,
                          self.item_content(data.catalog, keys), id_rows, creator_rows)
        id_of = items.id_rows
        opt = torch.optim.Adam([*users.parameters(), *items.parameters()], lr=cfg.lr, fused=True)
        for b in training_batches(len(u), cfg.samples, cfg.batch_size, gen):
            ub = F.normalize(users(u[b]), dim=-1)
            ib = F.normalize(items(i[b], cfg.id_dropout, gen), dim=-1)
            logits = batch_logits(ub, ib, cfg.temperature, log_q[i[b]] if cfg.logq_correction else None)
            # Rows of one streamer (or one short video) are not each other's negatives.
            logits = mask_shared_items(logits, id_of[i[b]])
            if cfg.own_domain_negatives:
                logits = own_domain_only(logits, is_live[i[b]])
            loss = F.cross_entropy(logits, torch.arange(len(b)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.tower = items
        with torch.no_grad():
            self.users = IndexedVectors([str(x) for x in user_ids], F.normalize(users.weight, dim=-1).numpy())
            all_items = F.normalize(items(torch.arange(len(keys))), dim=-1).numpy()
        self.items = IndexedVectors(keys, all_items)

    @torch.no_grad()
    def retrieval_vectors(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unit item-tower vectors of any items, each computed as training computed its key's:
        (vectors, known). Unknown: no id, no creator and no content."""
        assert self.tower is not None and self.catalog is not None, "fit first"
        keys = [self.tower_key(i) for i in item_ids]
        ids, creators = self._id_and_creator_rows(keys)
        content = self.item_content(self.catalog, keys)
        has_content = np.zeros(len(keys), dtype=bool)
        for m in content.values():
            has_content |= np.abs(m).sum(axis=1) > 0
        out = self.tower.encode(torch.from_numpy(ids), torch.from_numpy(creators),
                                {g: torch.from_numpy(content[g]) if g in content
                                 else torch.zeros(len(keys), p.in_features)
                                 for g, p in self.tower.proj.items()})
        return F.normalize(out, dim=-1).numpy(), (ids >= 0) | (creators >= 0) | has_content

    def _item_rows(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """retrieval_vectors with a memo: evaluation asks chunk by chunk for overlapping rooms."""
        todo = [i for i in dict.fromkeys(item_ids) if i not in self._scored]
        if todo:
            vectors, known = self.retrieval_vectors(todo)
            for n, item in enumerate(todo):
                self._scored[item] = vectors[n] if known[n] else None
        dim = self.config.dim
        got = [self._scored[i] for i in item_ids]
        known = np.array([g is not None for g in got], dtype=bool)
        return np.stack([g if g is not None else np.zeros(dim, dtype=np.float32) for g in got]) \
            if got else np.zeros((0, dim), dtype=np.float32), known

    def score(self, user_ids: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """User x item dot products, each item through the tower as it was trained."""
        assert self.users is not None, "fit first"
        uv, uk = self.users.take([str(int(x)) for x in user_ids])
        iv, ik = self._item_rows(item_ids)
        return dot_scores(uv, uk, iv, ik)

    def user_vectors(self) -> IndexedVectors:
        """The user tower's unit vectors, by str(user_id)."""
        assert self.users is not None, "fit first"
        return self.users

    def item_vectors(self) -> tuple[list[str], np.ndarray]:
        """Every learned item vector (short videos and live keys), for the projection plot."""
        assert self.items is not None, "fit first"
        return self.items.ids, self.items.vectors
