"""The BERT encoder's CPU serving path: packed tokens, fused projections, bf16 matmuls where
the CPU multiplies bf16 natively.

`engine/bert.py` is the readable, trainable module (padded batches, one Linear per checkpoint
key). Serving on a CPU wants three things it does not do:

* **No padding.** A batch's texts are laid end to end as one [N, H] matrix of real tokens
  (`offsets` marks where each starts), so every per-token op (projections, GELU, LayerNorm)
  runs on exactly N rows and attention needs no mask.
* **Keys made transposed.** Query and value are one [2H, H] projection; keys come out of
  their matmul already transposed ([H, N]), the layout the attention kernel reads.
* **bf16 multiplies where they are native.** On CPUs with AVX512_BF16 or AMX the five matmuls
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
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.bert import BertModel, l2_normalize
from engine.native import cpu_flags, kernel_library

PRECISION_ENV = "SUPPORTBOT_EMBED_PRECISION"  # read below by name (tests/test_deploy.py greps it)
_KEY_PAD = 16  # the attention kernel's widest vector (vec.h), in keys


def native_bf16_cpu() -> bool:
    """True where the CPU has bf16 dot-product instructions (AVX512_BF16 or AMX-BF16)."""
    flags = set(cpu_flags().split())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def matmul_dtype() -> torch.dtype:
    """The operand dtype of the encoder's CPU matmuls: $SUPPORTBOT_EMBED_PRECISION, else bf16
    on CPUs that multiply it natively, else fp32."""
    value = os.environ.get("SUPPORTBOT_EMBED_PRECISION", "auto").strip().lower()
    if value in ("fp32", "float32"):
        return torch.float32
    if value in ("bf16", "bfloat16"):
        return torch.bfloat16
    if value not in ("", "auto"):
        raise ValueError(f"{PRECISION_ENV}={value!r} is not one of auto, fp32, bf16")
    return torch.bfloat16 if native_bf16_cpu() else torch.float32


def _activate_(h: Tensor, act: torch.nn.Module) -> None:
    """The model's activation module, applied in place (h is a reused buffer)."""
    if isinstance(act, torch.nn.ReLU):
        h.relu_()
    else:
        torch.ops.aten.gelu_(h, approximate=getattr(act, "approximate", "none"))


class _Workspace:
    """Buffers kept from one encode to the next. Fresh multi-MB tensors for every layer of
    every batch made glibc map and unmap pages: after the decoder's large allocations had
    moved its thresholds, that cost the encoder 10 %."""

    def __init__(self) -> None:
        self._flat: dict[str, Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """A contiguous [shape] view of buffer `name`, grown (never shrunk) as needed."""
        numel = 1
        for n in shape:
            numel *= n
        buf = self._flat.get(name)
        if buf is None or buf.dtype != dtype or buf.numel() < numel:
            buf = self._flat[name] = torch.empty(numel, dtype=dtype)
        return buf[:numel].view(shape)


@dataclass(frozen=True)
class _Layer:
    """One layer's weights in the matmul dtype; `*_wt` are transposed ([in, out]) so that
    `addmm(b, x, w_t, out=...)` writes into a reused buffer."""

    qv_wt: Tensor  # [H, 2H]: query and value side by side
    qv_b: Tensor  # [2H]
    k_w: Tensor  # [H, H], not transposed: keys are computed transposed, W_k · xᵀ
    k_b: Tensor  # [H, 1]: added to each column of the transposed keys
    out_wt: Tensor  # [H, H]
    out_b: Tensor
    ln1: torch.nn.LayerNorm  # the model's own modules (fp32 parameters)
    ffn_wt: Tensor  # [H, I]
    ffn_b: Tensor
    act: torch.nn.Module  # the model's own GELU/ReLU module
    down_wt: Tensor  # [I, H]
    down_b: Tensor
    ln2: torch.nn.LayerNorm


class PackedEncoder:
    """Sentence vectors from a `BertModel` on the CPU, computed on packed, unpadded tokens."""

    def __init__(self, model: BertModel, dtype: torch.dtype | None = None) -> None:
        self.model = model
        self.dtype = dtype or matmul_dtype()
        self.lib = kernel_library()
        self._params = list(model.parameters())  # walking the module tree costs ~0.5 ms a call
        self._versions: tuple[int, ...] = ()
        self._workspace = _Workspace()
        self._lock = threading.Lock()  # one encode at a time: they share the workspace
        self._layers: list[_Layer] = []

    def _snapshot(self) -> list[_Layer]:
        """The layers' weights in the matmul dtype, rebuilt when any parameter has changed."""
        versions = tuple(p._version for p in self._params)
        if versions != self._versions:
            dt = self.dtype

            def cast(*tensors: Tensor) -> Tensor:
                return torch.cat([t.detach() for t in tensors]).to(dt).contiguous()

            def cast_t(*tensors: Tensor) -> Tensor:  # Linear weights [out, in] -> [in, out]
                return cast(*tensors).t().contiguous()

            layers = []
            for layer in self.model.layers:
                att = layer.attention.self
                layers.append(_Layer(
                    qv_wt=cast_t(att.query.weight, att.value.weight),
                    qv_b=cast(att.query.bias, att.value.bias),
                    k_w=cast(att.key.weight),
                    k_b=cast(att.key.bias).unsqueeze(1),
                    out_wt=cast_t(layer.attention.output.dense.weight),
                    out_b=cast(layer.attention.output.dense.bias),
                    ln1=layer.attention.output.LayerNorm,
                    ffn_wt=cast_t(layer.intermediate.dense.weight),
                    ffn_b=cast(layer.intermediate.dense.bias),
                    act=layer.intermediate.act,
                    down_wt=cast_t(layer.output.dense.weight),
                    down_b=cast(layer.output.dense.bias),
                    ln2=layer.output.LayerNorm,
                ))
            self._layers, self._versions = layers, versions
        return self._layers

    def encode(self, ids: Sequence[Sequence[int]]) -> Tensor:
        """Unit vectors [len(ids), H] fp32 for token-id rows ([CLS] ... [SEP]), any lengths."""
        with torch.inference_mode(), self._lock:
            lengths = torch.tensor([len(row) for row in ids], dtype=torch.long)  # [B]
            offsets = torch.zeros(len(ids) + 1, dtype=torch.long)
            offsets[1:] = lengths.cumsum(0)
            flat = torch.tensor([t for row in ids for t in row], dtype=torch.long)  # [N]
            x = self._embed(flat, lengths, offsets)  # [N, H] fp32
            layers = self._snapshot()
            if self.lib is not None:
                x = self._layers_native(layers, x, offsets)
            else:
                for layer in layers:
                    x = self._layer_torch(layer, x, lengths, offsets)
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

    def _layers_native(self, layers: list[_Layer], x: Tensor, offsets: Tensor) -> Tensor:
        """Every layer with the C kernels: x [N, H] fp32 in; out, a workspace view of [N, H]
        fp32 valid until the next encode."""
        lib, dt, ws, cfg = self.lib, self.dtype, self._workspace, self.model.config
        assert lib is not None
        N, H = x.shape
        # 16 zero rows after the tokens: the keys' matmul runs over them too, so the transposed
        # keys have 16 spare columns for the attention kernel's last vector of 16 keys.
        P = N + _KEY_PAD
        x_pad = ws.take("x", (P, H), torch.float32)
        x_pad[:N] = x
        x_pad[N:] = 0.0
        xd_pad = x_pad if dt == torch.float32 else ws.take("xd", (P, H), dt)  # matmul operand
        if xd_pad is not x_pad:
            xd_pad.copy_(x_pad)
        x, xd = x_pad[:N], xd_pad[:N]
        qv = ws.take("qv", (N, 2 * H), dt)  # queries, values
        kt = ws.take("kt", (H, P), dt)  # keys, transposed
        ctx = ws.take("ctx", (N, H), torch.float32)
        ctxd = ctx if dt == torch.float32 else ws.take("ctxd", (N, H), dt)
        h = ws.take("h", (N, cfg.intermediate_size), dt)
        y = ws.take("y", (N, H), dt)  # each sublayer's output before add & norm
        narrow = xd.data_ptr() if dt != torch.float32 else None

        def add_norm(ln: torch.nn.LayerNorm) -> None:
            """x <- ln(x + y) in place, and xd <- x in the matmul dtype, in one pass."""
            lib.sb_add_layernorm(x.data_ptr(), y.data_ptr(), dt != torch.float32,
                                 ln.weight.data_ptr(), ln.bias.data_ptr(), narrow, N, H, ln.eps)

        for w in layers:
            torch.addmm(w.qv_b, xd, w.qv_wt, out=qv)  # [N, 2H]
            torch.addmm(w.k_b, w.k_w, xd_pad.T, out=kt)  # [H, N + 16]
            rc = lib.sb_attention_packed(
                ctypes.c_void_p(qv.data_ptr()), ctypes.c_void_p(kt.data_ptr()),
                ctypes.c_void_p(ctx.data_ptr()), ctypes.c_void_p(offsets.data_ptr()),
                len(offsets) - 1, cfg.num_attention_heads, cfg.head_dim, P,
                cfg.head_dim**-0.5, dt == torch.bfloat16)
            if rc != 0:
                raise MemoryError(f"attention kernel failed (code {rc})")
            if ctxd is not ctx:
                ctxd.copy_(ctx)
            torch.addmm(w.out_b, ctxd, w.out_wt, out=y)  # [N, H]
            add_norm(w.ln1)
            torch.addmm(w.ffn_b, xd, w.ffn_wt, out=h)  # [N, I]
            _activate_(h, w.act)
            torch.addmm(w.down_b, h, w.down_wt, out=y)  # [N, H]
            add_norm(w.ln2)
        return x

    def _layer_torch(self, w: _Layer, x: Tensor, lengths: Tensor, offsets: Tensor) -> Tensor:
        """One layer in torch ops (no kernel library): the same arithmetic, more passes."""
        dt = self.dtype
        xd = x.to(dt)
        qv = torch.addmm(w.qv_b, xd, w.qv_wt).float()  # [N, 2H]
        k = torch.addmm(w.k_b.squeeze(1), xd, w.k_w.t()).float()  # [N, H]
        ctx = self._attention_torch(qv, k, lengths, offsets)  # [N, H] fp32
        x = w.ln1(x + torch.addmm(w.out_b, ctx.to(dt), w.out_wt).float())  # [N, H]
        h = w.act(torch.addmm(w.ffn_b, x.to(dt), w.ffn_wt))  # [N, I]
        out: Tensor = w.ln2(x + torch.addmm(w.down_b, h, w.down_wt).float())  # [N, H]
        return out

    def _attention_torch(self, qv: Tensor, k: Tensor, lengths: Tensor,
                         offsets: Tensor) -> Tensor:
        """One unmasked SDPA per run of equal-length texts (the embedder sorts by length, so
        runs are long): qv [N, 2H], k [N, H] fp32 -> context [N, H] fp32."""
        cfg = self.model.config
        nh, hd = cfg.num_attention_heads, cfg.head_dim
        H = nh * hd
        out = torch.empty(k.shape[0], H)
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
