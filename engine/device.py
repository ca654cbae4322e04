"""Pick the compute device and dtype once, so every model in the engine agrees.

CPU computes in fp32: on AVX2-only CPUs bf16 matmuls are slower, not faster. (The encoder's
CPU serving path alone may multiply in bf16 where the CPU does so natively, keeping its
weights and activations fp32: engine/bert_packed.py.) CUDA uses bf16
where the GPU supports it (Ampere and newer) and fp16 otherwise; both halve memory traffic,
which is what bounds decoding. ``SUPPORTBOT_DEVICE`` / ``SUPPORTBOT_DTYPE`` override.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype


def pick_placement(device: str | None = None, dtype: str | None = None) -> Placement:
    """Choose (device, dtype): explicit arguments, then environment, then what the host has."""
    device = device or os.environ.get("SUPPORTBOT_DEVICE") or None
    dtype = dtype or os.environ.get("SUPPORTBOT_DTYPE") or None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dtype is not None:
        if dtype not in _DTYPES:
            raise ValueError(f"SUPPORTBOT_DTYPE={dtype!r} is not one of {sorted(_DTYPES)}")
        return Placement(dev, _DTYPES[dtype])
    if dev.type == "cuda":
        return Placement(dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return Placement(dev, torch.float32)
