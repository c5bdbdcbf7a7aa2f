"""The dtype for encoding with a trained model: bfloat16 where the CPU computes it natively.

Encoding every item (the student's chorus states, content_text's MiniLM vectors) is inference
only. On a CPU with AMX or AVX512-BF16 (this project's machines) bfloat16 runs it 1.1x (the
64-d student, whose small matrices leave little to gain) to 2.9x (MiniLM) faster than float32,
and the vectors agree with the float32 ones to a cosine of 0.9998 or more
(benchmarks/bf16_encoding.py -> benchmarks/results/bf16_encoding.json). Without those
instructions bfloat16 is emulated and slower, so `auto` keeps float32 there. Training always
runs in float32.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from rgcd.config import EncodeDtype

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic in hardware (a flag of NATIVE_BF16_FLAGS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to ask, stay on float32
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def encode_dtype(setting: EncodeDtype) -> torch.dtype:
    """The torch dtype a setting stands for (`auto`: bfloat16 when `native_bf16()`)."""
    if setting == "auto":
        return torch.bfloat16 if native_bf16() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[setting]


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' / 'bfloat16': how reports and file metadata name it."""
    return str(dtype).removeprefix("torch.")
