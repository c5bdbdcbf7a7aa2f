"""The stage-2 model as a folder (aggregation.safetensors, retriever.safetensors, published.json):
`rgcd transfer` writes one per version (`Workspace.stage2_model`), `rgcd publish` copies the version
it publishes to `Workspace.published_model`, and serving reads that copy to encode a room going on
air. Every side imports this module; none imports another's runner."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from rgcd.atomic import atomic_path, write_json_atomic
from rgcd.config import TransferConfig, Workspace
from rgcd.training.decomposition import QueryAggregation, encode_items
from rgcd.training.frames import MissingInput


def save_published(folder: Path, model: QueryAggregation, fingerprint: str, retriever, version: str,
                   retriever_fp: str, cut: datetime, cfg: TransferConfig) -> None:
    """Write the stage-2 aggregation and the retriever's item tower where `load_published` reads them."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "aggregation.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp)
    with atomic_path(folder / "retriever.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in retriever.tower.state_dict().items()}, tmp)
    authors = {k: i for k, i in retriever.id_index.items() if k.startswith("author:")}
    write_json_atomic({"model_version": version, "fingerprint": fingerprint,
                       "retriever_fingerprint": retriever_fp, "cut": cut.isoformat(),
                       "config": cfg.model_dump(), "state_dim": int(model.norm.normalized_shape[0]),
                       "n_ids": len(retriever.id_index), "dim": int(retriever.tower.ids.weight.shape[1]),
                       "groups": {g: int(p.weight.shape[1]) for g, p in retriever.tower.proj.items()},
                       "author_keys": authors,
                       "creators": {str(a): i for a, i in retriever.creator_index.items()}},
                      folder / "published.json", indent=None)


class PublishedModel:
    """The published stage-2 model and retriever item tower: new items' chorus states -> vectors."""

    def __init__(self, folder: Path) -> None:
        from safetensors.torch import load_file

        from rgcd.training.baselines.uniembed import ItemTower

        meta_path = folder / "published.json"
        if not meta_path.exists():
            raise MissingInput(f"{meta_path} is missing: run `rgcd transfer` first")
        meta = json.loads(meta_path.read_text())
        self.model_version: str = meta["model_version"]
        self.author_keys: dict[str, int] = meta["author_keys"]
        self.creators: dict[str, int] = meta["creators"]
        cfg = TransferConfig(**meta["config"])
        self.aggregation = QueryAggregation(meta["state_dim"], cfg)
        self.aggregation.load_state_dict(load_file(folder / "aggregation.safetensors"))
        self.aggregation.eval()
        dummy = {g: np.zeros((1, d), dtype=np.float32) for g, d in meta["groups"].items()}
        self.tower = ItemTower(meta["n_ids"], len(self.creators), meta["dim"], dummy,
                               np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
        self.tower.load_state_dict(load_file(folder / "retriever.safetensors"))

    @torch.no_grad()
    def encode(self, chorus_states: np.ndarray, domains: list[str], author_ids: list[int | None],
               mm_vectors: list | None = None) -> dict:
        """transferable, residual and retrieval unit vectors of new items, with the model version.

        chorus_states: (n, n_chorus, d) from the same student (`rgcd.training.distill`); domains 'photo'
        or 'live'; author_ids: the item's author (a room's streamer: its id embedding joins in when
        the streamer was seen in training; the creator embedding when the author was); mm_vectors:
        each item's raw multimodal vector or None (the retriever reads them, as uniembed does).
        The result matches what `rgcd transfer` wrote for items it saw: the same functions compute
        both.
        """
        import torch.nn.functional as F

        from rgcd.training.baselines.uniembed import domain_columns
        from rgcd.training.full_method import tower_groups

        t, r = encode_items(self.aggregation, chorus_states, domains)
        is_photo = np.array([d == "photo" for d in domains], dtype=bool)
        ids = torch.tensor([self.author_keys.get(f"author:{a}", -1) if a is not None and not p else -1
                            for a, p in zip(author_ids, is_photo, strict=True)], dtype=torch.long)
        creators = torch.tensor([self.creators.get(str(a), -1) if a is not None else -1 for a in author_ids],
                                dtype=torch.long)
        groups = {g: torch.from_numpy(m) for g, m in tower_groups(t, r, is_photo).items()}
        groups.update({g: torch.from_numpy(m) for g, m in domain_columns(is_photo).items()
                       if g in self.tower.proj})
        for domain in ("photo", "live"):
            if domain not in self.tower.proj:
                continue
            width = self.tower.proj[domain].in_features
            raw = np.zeros((len(domains), width), dtype=np.float32)
            for n, (d, v) in enumerate(zip(domains, mm_vectors or [None] * len(domains), strict=True)):
                if d == domain and v is not None and len(v) == width:
                    raw[n] = np.asarray(v, dtype=np.float32)
            groups[domain] = torch.from_numpy(raw)
        retrieval = F.normalize(self.tower.encode(ids, creators, groups), dim=-1).numpy()
        return {"transferable": t, "residual": r, "retrieval": retrieval, "model_version": self.model_version}


def load_published(ws: Workspace, version: str | None = None) -> PublishedModel:
    """The model readers are served (`rgcd publish`'s copy), or stage 2's `version` of it;
    `.encode(chorus_states, domains, author_ids)`."""
    return PublishedModel(ws.published_model if version is None else ws.stage2_model(version))


def promote(ws: Workspace, version: str) -> bool:
    """Make stage 2's `version` the model serving reads (publish and rollback call this after the
    alias moved); False when that version's folder is gone (pruned). Atomic for readers: the new
    folder is complete before it takes the name."""
    source = ws.stage2_model(version)
    if not (source / "published.json").exists():
        return False
    target = ws.published_model
    staging, old = target.with_name(target.name + ".new"), target.with_name(target.name + ".old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(source, staging)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return True


def prune_versions(ws: Workspace, keep: set[str]) -> list[str]:
    """Remove stage-2 model folders of versions not in `keep`; the names removed."""
    root = ws.stage2_models
    if not root.exists():
        return []
    gone = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in keep)
    for name in gone:
        shutil.rmtree(root / name, ignore_errors=True)
    return gone
