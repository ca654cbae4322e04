"""The BERT encoder's CPU serving path: packed tokens, fused projections, bf16 matmuls where
the CPU multiplies bf16 natively.

`engine/bert.py` is the readable, trainable module (padded batches, one Linear per checkpoint
key). Serving on a CPU wants three things it does not do:

* **No padding.** A batch's texts are laid end to end as one [N, H] matrix of real tokens
  (`offsets` marks where each starts), so every per-token op (projections, GELU, LayerNorm)
  runs on exactly N rows and attention needs no mask.
* **Keys made transposed.** Query and value are one [2H, H] projection; keys come out of
  their matmul already transposed ([H, N]), the layout the attention kernel reads.
* **bf16 multiplies where they are native.** On CPUs with AVX512_BF16 or AMX the four matmuls
  per layer run on bf16 operands with fp32 accumulation (oneDNN), twice as fast as fp32 on
  Zen 4; the residual stream, LayerNorm, softmax and pooling stay fp32, which keeps vectors
  within cosine 0.99997 of the fp32 model. ``SUPPORTBOT_EMBED_PRECISION=fp32`` turns it off;
  ``bf16`` forces it (slow on CPUs that emulate it).

Attention runs in the C kernel ``engine/kernels/attention.c`` (one pass per sequence and head,
no padding); without the kernel library, in torch per run of equal-length sequences.
The weights are snapshotted per parameter version, so an encoder fine-tuned in place
(`engine.train_encoder`) is re-snapshotted on its next use.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.bert import BertModel, l2_normalize
from engine.native import cpu_flags, kernel_library

PRECISION_ENV = "SUPPORTBOT_EMBED_PRECISION"
_KEY_PAD = 16  # the attention kernel's vector width, in keys


def native_bf16_cpu() -> bool:
    """True where the CPU has bf16 dot-product instructions (AVX512_BF16 or AMX-BF16)."""
    flags = set(cpu_flags().split())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def matmul_dtype() -> torch.dtype:
    """The operand dtype of the encoder's CPU matmuls: $SUPPORTBOT_EMBED_PRECISION, else bf16
    on CPUs that multiply it natively, else fp32."""
    value = os.environ.get(PRECISION_ENV, "auto").strip().lower()
    if value in ("fp32", "float32"):
        return torch.float32
    if value in ("bf16", "bfloat16"):
        return torch.bfloat16
    if value not in ("", "auto"):
        raise ValueError(f"{PRECISION_ENV}={value!r} is not one of auto, fp32, bf16")
    return torch.bfloat16 if native_bf16_cpu() else torch.float32


@dataclass(frozen=True)
class _Layer:
    qv_w: Tensor  # [2H, H] matmul dtype: query and value stacked
    qv_b: Tensor  # [2H]
    k_w: Tensor  # [H, H]
    k_b: Tensor  # [H, 1]: added to each column of the transposed keys
    out_w: Tensor  # [H, H]
    out_b: Tensor
    ln1: torch.nn.LayerNorm  # the model's own modules (fp32 parameters)
    ffn_w: Tensor  # [I, H]
    ffn_b: Tensor
    act: torch.nn.Module  # the model's own GELU/ReLU module
    down_w: Tensor  # [H, I]
    down_b: Tensor
    ln2: torch.nn.LayerNorm


class PackedEncoder:
    """Sentence vectors from a `BertModel` on the CPU, computed on packed, unpadded tokens."""

    def __init__(self, model: BertModel, dtype: torch.dtype | None = None) -> None:
        self.model = model
        self.dtype = dtype or matmul_dtype()
        self.lib = kernel_library()
        self._versions: tuple[int, ...] = ()
        self._layers: list[_Layer] = []

    def _snapshot(self) -> list[_Layer]:
        """The layers' weights in the matmul dtype, rebuilt when any parameter has changed."""
        versions = tuple(p._version for p in self.model.parameters())
        if versions != self._versions:
            dt = self.dtype

            def cast(*tensors: Tensor) -> Tensor:
                return torch.cat([t.detach() for t in tensors]).to(dt).contiguous()

            layers = []
            for layer in self.model.layers:
                att = layer.attention.self
                layers.append(_Layer(
                    qv_w=cast(att.query.weight, att.value.weight),
                    qv_b=cast(att.query.bias, att.value.bias),
                    k_w=cast(att.key.weight),
                    k_b=cast(att.key.bias).unsqueeze(1),
                    out_w=cast(layer.attention.output.dense.weight),
                    out_b=cast(layer.attention.output.dense.bias),
                    ln1=layer.attention.output.LayerNorm,
                    ffn_w=cast(layer.intermediate.dense.weight),
                    ffn_b=cast(layer.intermediate.dense.bias),
                    act=layer.intermediate.act,
                    down_w=cast(layer.output.dense.weight),
                    down_b=cast(layer.output.dense.bias),
                    ln2=layer.output.LayerNorm,
                ))
            self._layers, self._versions = layers, versions
        return self._layers

    def encode(self, ids: Sequence[Sequence[int]]) -> Tensor:
        """Unit vectors [len(ids), H] fp32 for token-id rows ([CLS] ... [SEP]), any lengths."""
        with torch.inference_mode():
            lengths = torch.tensor([len(row) for row in ids], dtype=torch.long)  # [B]
            offsets = torch.zeros(len(ids) + 1, dtype=torch.long)
            offsets[1:] = lengths.cumsum(0)
            flat = torch.tensor([t for row in ids for t in row], dtype=torch.long)  # [N]
            x = self._embed(flat, lengths, offsets)  # [N, H] fp32
            for layer in self._snapshot():
                x = self._layer(layer, x, lengths, offsets)
            # Mean over each text's tokens: segment sums as one index_add, then divide.
            owner = torch.repeat_interleave(torch.arange(len(ids)), lengths)  # [N]
            sums = torch.zeros(len(ids), x.shape[1]).index_add_(0, owner, x)  # [B, H]
            return l2_normalize(sums / lengths.clamp(min=1).unsqueeze(1).float())

    def _embed(self, flat: Tensor, lengths: Tensor, offsets: Tensor) -> Tensor:
        emb = self.model.embeddings
        starts = torch.repeat_interleave(offsets[:-1], lengths)  # [N]: each token's text start
        positions = torch.arange(flat.shape[0]) - starts  # [N]: 0..len-1 within each text
        x = emb.word_embeddings(flat) + emb.position_embeddings(positions)
        x = x + emb.token_type_embeddings.weight[0]  # single sentences: segment 0
        out: Tensor = emb.LayerNorm(x)  # [N, H]
        return out

    def _layer(self, w: _Layer, x: Tensor, lengths: Tensor, offsets: Tensor) -> Tensor:
        dt = self.dtype
        xd = x.to(dt)
        qv = F.linear(xd, w.qv_w, w.qv_b)  # [N, 2H]
        ctx = self._attention(qv, xd, w, lengths, offsets)  # [N, H] fp32
        x = w.ln1(x + F.linear(ctx.to(dt), w.out_w, w.out_b).float())  # [N, H]
        h = w.act(F.linear(x.to(dt), w.ffn_w, w.ffn_b))  # [N, I]
        out: Tensor = w.ln2(x + F.linear(h, w.down_w, w.down_b).float())  # [N, H]
        return out

    def _attention(self, qv: Tensor, xd: Tensor, w: _Layer, lengths: Tensor,
                   offsets: Tensor) -> Tensor:
        """Context [N, H] fp32: each token attends over its own text. qv [N, 2H] are the
        queries and values, xd [N, H] the layer input in the matmul dtype (for the keys)."""
        cfg = self.model.config
        nh, hd = cfg.num_attention_heads, cfg.head_dim
        N, H = xd.shape[0], nh * hd
        qv = qv.float().contiguous()
        out = torch.empty(N, H)
        if self.lib is not None:
            # Keys transposed, [H, N + 16]: the kernel reads whole vectors of 16 keys, and the
            # 16 extra (zero-input) columns keep the last text's vectors inside the buffer.
            padded = torch.cat([xd, xd.new_zeros(_KEY_PAD, H)])  # [N + 16, H]
            kt = torch.addmm(w.k_b, w.k_w, padded.T).float()  # [H, N + 16]
            rc = self.lib.sb_attention_packed(
                ctypes.c_void_p(qv.data_ptr()), ctypes.c_void_p(kt.data_ptr()),
                ctypes.c_void_p(out.data_ptr()), ctypes.c_void_p(offsets.data_ptr()),
                len(lengths), nh, hd, kt.shape[1], hd**-0.5)
            if rc != 0:
                raise MemoryError(f"attention kernel failed (code {rc})")
            return out
        # Without the kernel: one unmasked SDPA per run of equal-length texts (the embedder
        # sorts by length, so runs are long).
        k = F.linear(xd, w.k_w, w.k_b.squeeze(1)).float()  # [N, H]
        bounds = offsets.tolist()
        lens = lengths.tolist()
        i = 0
        while i < len(lens):
            j = i
            while j < len(lens) and lens[j] == lens[i]:
                j += 1
            T, a, b = lens[i], bounds[i], bounds[j]

            def heads(t: Tensor, n: int = j - i, T: int = T) -> Tensor:  # -> [n, nh, T, hd]
                return t.reshape(n, T, nh, hd).transpose(1, 2)

            ctx = F.scaled_dot_product_attention(heads(qv[a:b, :H]), heads(k[a:b]),
                                                 heads(qv[a:b, H:]))  # [n, nh, T, hd]
            out[a:b] = ctx.transpose(1, 2).reshape(b - a, H)
            i = j
        return out
