"""The baselines, one readable file each, all behind `rgcd.training.recommender.Recommender`.

`build_model(name, cfg)` is how evaluation creates them; a new model (the full method) plugs in
by adding a factory to `MODELS` or by passing its own instances to `rgcd.training.evaluation`.
"""

from __future__ import annotations

from collections.abc import Callable

from rgcd.config import EvaluationConfig
from rgcd.errors import RgcdError
from rgcd.training.recommender import Recommender


class UnknownModelError(RgcdError):
    """A model name that is not in MODELS."""

    exit_code = 2


def _popularity(cfg: EvaluationConfig) -> Recommender:
    from rgcd.training.baselines.popularity import Popularity

    return Popularity()


def _bpr_mf(cfg: EvaluationConfig) -> Recommender:
    from rgcd.training.baselines.bpr_mf import BPRMF, BPRConfig

    return BPRMF(BPRConfig(dim=cfg.dim, samples=cfg.mf_samples))


def _content_mm(cfg: EvaluationConfig) -> Recommender:
    from rgcd.training.baselines.content import ContentMM

    return ContentMM()


def _content_text(cfg: EvaluationConfig) -> Recommender:
    from rgcd.training.baselines.content import ContentText, ContentTextConfig
    from rgcd.training.precision import dtype_name, encode_dtype

    return ContentText(ContentTextConfig(max_items=cfg.text_max_items,
                                         dtype=dtype_name(encode_dtype(cfg.text_encode_dtype))))


def _uniembed(cfg: EvaluationConfig) -> Recommender:
    from rgcd.training.baselines.uniembed import UniEmbed, UniEmbedConfig

    return UniEmbed(UniEmbedConfig(dim=cfg.dim, samples=cfg.contrastive_samples))


def _emcdr(cfg: EvaluationConfig) -> Recommender:
    from rgcd.training.baselines.bpr_mf import BPRConfig
    from rgcd.training.baselines.emcdr import EMCDR, EMCDRConfig

    mf = BPRConfig(dim=cfg.dim, samples=cfg.mf_samples)
    return EMCDR(EMCDRConfig(source=mf, target=mf))


MODELS: dict[str, Callable[[EvaluationConfig], Recommender]] = {
    "popularity": _popularity,
    "bpr_mf": _bpr_mf,
    "content_mm": _content_mm,
    "content_text": _content_text,
    "uniembed": _uniembed,
    "emcdr": _emcdr,
}


def build_model(name: str, cfg: EvaluationConfig) -> Recommender:
    """A fresh, unfitted model by name; unknown names say which exist."""
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](cfg)
