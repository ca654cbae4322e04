"""Weights kept in GGML's 32-weight blocks and multiplied by the C kernel, for decoding on CPU.

A GGUF file's Q4_0 / Q4_1 / Q8_0 tensors are loaded twice over: dequantised to fp32 (the model's
parameters, used for prompts and everywhere else) and, here, repacked block by block for
``engine/kernels/qmatmul.c``, which the decoder uses when a forward has only a few rows (one
new token per running sequence). Decoding is bound by reading the weights; the 4-bit blocks are
a sixth of the fp32 bytes, and the kernel expands each block with exactly the dequantiser's
arithmetic, so both paths multiply by bit-identical weights. The extra memory is ~15 % of the
fp32 model.

Repacked layout (what the kernel reads): ``scale[n, b]`` (and ``mins[n, b]`` for Q4_1) in fp32,
``qs[n, b, :]`` the block's 16 nibble bytes (Q4_x) or 32 signed bytes (Q8_0).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from gguf.constants import GGMLQuantizationType as Q

from engine.native import kernel_library

BLOCK = 32
# GGML type -> (bytes per block in the file, bytes of quants per block, has a min)
_LAYOUT = {Q.Q4_0: (18, 16, False), Q.Q4_1: (20, 16, True), Q.Q8_0: (34, 32, False)}
KERNEL_TYPES = frozenset(_LAYOUT)
# Above this many rows the fp32 weights through MKL's GEMM are faster than the kernel, which is
# built for the few rows of a decode step (measured on a Xeon: AVX-512 crosses near 48 rows;
# the AVX2 build is 1.8x faster than MKL at one row and slower by 16).
_MAX_ROWS = {2: 32, 1: 8}


def kernel_available() -> bool:
    """Whether the compiled kernel exists and is a vectorised one (AVX-512 or AVX2 + FMA)."""
    return max_rows() > 0


@functools.cache
def max_rows() -> int:
    """Forwards with at most this many rows use the kernel (0: never, no fast kernel)."""
    lib = kernel_library()
    return 0 if lib is None else _MAX_ROWS.get(int(lib.sb_qmatmul_fast()), 0)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor | None:
    """RMSNorm of a decode step's rows (fp32, CPU) in one C call, or None when the kernel
    library is not there (the caller then uses torch's)."""
    lib = kernel_library()
    if lib is None:
        return None
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.empty_like(flat)
    lib.sb_rmsnorm(flat.data_ptr(), weight.data_ptr(), out.data_ptr(), flat.shape[0],
                   flat.shape[1], eps)
    return out.view(x.shape)


@dataclass(frozen=True)
class QuantizedWeight:
    """A ``[out_features, in_features]`` weight as repacked GGML blocks (CPU tensors)."""

    ggml_type: Q
    qs: torch.Tensor  # uint8 [N, nb, quant bytes]
    scale: torch.Tensor  # fp32 [N, nb]
    mins: torch.Tensor | None  # fp32 [N, nb], Q4_1 only
    _fixed_args: tuple[int, int, int, int | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The kernel's first four arguments never change: computed once, not per token.
        mins = None if self.mins is None else self.mins.data_ptr()
        args = (int(self.ggml_type), self.qs.data_ptr(), self.scale.data_ptr(), mins)
        object.__setattr__(self, "_fixed_args", args)

    @property
    def out_features(self) -> int:
        return int(self.scale.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.scale.shape[1]) * BLOCK

    @classmethod
    def from_blocks(cls, raw: np.ndarray, ggml_type: Q, shape: Sequence[int]) -> QuantizedWeight:
        """Repack a GGUF tensor's raw bytes; ``shape`` is ``(out_features, in_features)``."""
        block_bytes, quant_bytes, has_min = _LAYOUT[ggml_type]
        n, k = int(shape[0]), int(shape[1])
        if k % BLOCK:
            raise ValueError(f"in_features {k} is not a multiple of {BLOCK}")
        blocks = np.asarray(raw, dtype=np.uint8).reshape(n, k // BLOCK, block_bytes)

        def f16(at: int) -> torch.Tensor:
            half = np.ascontiguousarray(blocks[:, :, at:at + 2]).view(np.float16)[..., 0]
            return torch.from_numpy(half.astype(np.float32))

        start = 4 if has_min else 2
        qs = torch.from_numpy(np.ascontiguousarray(blocks[:, :, start:start + quant_bytes]))
        return cls(ggml_type, qs, f16(0), f16(2) if has_min else None)

    def rows(self, order: torch.Tensor) -> QuantizedWeight:
        """The weight with its rows reordered (``new[i] = old[order[i]]``)."""
        mins = None if self.mins is None else self.mins[order].contiguous()
        return QuantizedWeight(self.ggml_type, self.qs[order].contiguous(),
                               self.scale[order].contiguous(), mins)

    @staticmethod
    def stack(parts: Sequence[QuantizedWeight]) -> QuantizedWeight | None:
        """Row-wise concatenation (a fused q/k/v or gate/up weight), or None when the parts
        are stored as different types (the fused module then stays fp32)."""
        kinds = {p.ggml_type for p in parts}
        if len(kinds) != 1 or len({p.in_features for p in parts}) != 1:
            return None
        mins = None
        if parts[0].mins is not None:  # one type: then every part has them
            mins = torch.cat([p.mins for p in parts if p.mins is not None])
        return QuantizedWeight(parts[0].ggml_type, torch.cat([p.qs for p in parts]),
                               torch.cat([p.scale for p in parts]), mins)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T`` for fp32 CPU ``x [..., in_features]``: ``[..., out_features]``."""
        lib = kernel_library()
        if lib is None:
            raise RuntimeError("the quantised-matmul kernel is not available")
        k, n = self.in_features, self.out_features
        if x.shape[-1] != k or x.dtype != torch.float32 or x.device.type != "cpu":
            raise ValueError(f"expected fp32 CPU input [..., {k}], got {x.dtype} "
                             f"{tuple(x.shape)} on {x.device}")
        flat = x.reshape(-1, k).contiguous()
        out = torch.empty((flat.shape[0], n), dtype=torch.float32)
        status = lib.sb_qmatmul(*self._fixed_args, flat.data_ptr(), out.data_ptr(),
                                flat.shape[0], n, k)
        if status != 0:
            raise RuntimeError(f"sb_qmatmul failed with status {status}")
        return out.reshape(*x.shape[:-1], n)
