import numpy as np
import pytest
import torch

from rgcd.training import precision, text_encoder


def test_auto_is_bfloat16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    assert precision.encode_dtype("auto") == torch.bfloat16
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert precision.encode_dtype("auto") == torch.float32
    assert precision.encode_dtype("bfloat16") == torch.bfloat16
    assert precision.dtype_name(torch.bfloat16) == "bfloat16"


@pytest.mark.parametrize("texts", [["a live room selling noodles", "cat video", "football highlights"]])
def test_minilm_in_bfloat16_agrees_with_float32(texts):
    full = text_encoder.encode(texts, dtype="float32")
    half = text_encoder.encode(texts, dtype="bfloat16")
    text_encoder.release()
    assert half.dtype == np.float32 and not np.array_equal(half, full)
    assert (full * half).sum(1).min() > 0.99
    # and they still tell the texts apart as float32 does
    assert np.array_equal((full @ full.T).argsort(1), (half @ half.T).argsort(1))
