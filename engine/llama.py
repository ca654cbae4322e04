"""A Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM) built for batched serving.

Shapes in comments: B batch rows, T new tokens per row, S attended key positions, D hidden size,
H query heads, Hkv key/value heads, R = H // Hkv (GQA group size), hd head dim, V vocab.

Serving-oriented design:
  * The KV cache is preallocated once: ``k[layer, slot, Hkv, max_len, hd]``. A request owns a slot;
    rows of one forward may use any slots and sit at different positions (``start_pos``), so a
    scheduler can add requests to a running batch between decode steps, or prefill in chunks.
  * Ragged rows are right-padded; ``lengths`` says how many tokens of each row are real. Padding is
    never written to the cache and never attended to.
  * ``last_only=True`` runs the final norm and the output head on each row's last real token only:
    the head is the biggest matmul of a small model, and a prefill needs one row of it.
  * q/k/v and gate/up are fused into one matmul each. The state dict still uses Hugging Face names
    (``model.layers.0.self_attn.q_proj.weight``...): hooks split/join the fused tensors, so HF
    safetensors load directly and our GGUF loader maps onto the same names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine import quant
from engine.config import LlamaConfig
from engine.errors import ContextLengthExceeded
from engine.prefix_attention import DecodeGroup, grouped_decode_attention, plan_groups


class KVCache:
    """Preallocated keys and values for ``n_slots`` sequences of up to ``max_len`` tokens each."""

    def __init__(
        self,
        config: LlamaConfig,
        n_slots: int,
        max_len: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (config.num_hidden_layers, n_slots, config.num_key_value_heads, max_len,
                 config.head_dim)
        # zeros, not empty: a stale NaN bit pattern must never reach a softmax, even masked.
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # [L, slots, Hkv, max_len, hd]
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.n_slots = n_slots
        self.max_len = max_len

    def copy_prefix(self, src_slot: int, dst_slot: int, length: int) -> None:
        """Copy ``src_slot``'s first ``length`` positions into ``dst_slot`` (prefix cache)."""
        if src_slot == dst_slot or length <= 0:
            return
        self.k[:, dst_slot, :, :length].copy_(self.k[:, src_slot, :, :length])
        self.v[:, dst_slot, :, :length].copy_(self.v[:, src_slot, :, :length])


def rope_inv_freq(config: LlamaConfig) -> torch.Tensor:
    """Inverse RoPE frequencies ``[hd/2]`` in fp32, the same arithmetic as transformers."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    scaling = config.rope_scaling
    if scaling.rope_type == "linear":
        inv_freq = inv_freq / scaling.factor
    elif scaling.rope_type == "llama3":
        old_len = scaling.original_max_position_embeddings
        low_wavelen = old_len / scaling.low_freq_factor
        high_wavelen = old_len / scaling.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        # long wavelengths are divided by factor, short ones kept, the band between interpolated
        scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
        smooth = (old_len / wavelen - scaling.low_freq_factor) / (
            scaling.high_freq_factor - scaling.low_freq_factor)
        smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
        is_medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv_freq = torch.where(is_medium, smoothed, scaled)
    elif scaling.rope_type == "freq_factors":
        assert scaling.freq_factors is not None
        inv_freq = inv_freq / torch.tensor(scaling.freq_factors, dtype=torch.float)
    return inv_freq


def _linear(x: torch.Tensor, layer: Linear) -> torch.Tensor:
    """``layer(x)`` for the hot path. A few rows (decode) use the layer's GGML blocks through the
    C kernel when it has them (see ``engine.quant``), else run as ``weight @ x.T``: MKL then
    streams the weight once instead of packing it for a GEMM, 1.5-3x faster on CPU."""
    rows = x.numel() // x.shape[-1]
    weight, bias = layer.weight, layer.bias
    if layer.quantized is not None and rows <= quant.max_rows() and x.dtype == torch.float32:
        out = layer.quantized.matmul(x)
        return out if bias is None else out + bias
    if 1 < rows <= 16 and x.device.type == "cpu":
        out = torch.mm(weight, x.reshape(rows, x.shape[-1]).t()).t()
        out = out.reshape(*x.shape[:-1], weight.shape[0])
        return out if bias is None else out + bias
    return F.linear(x, weight, bias)


class Linear(nn.Module):
    """``nn.Linear`` whose initialisation can be skipped: weights about to be replaced by a
    checkpoint should not cost a random init and a first write to hundreds of MB."""

    def __init__(self, in_features: int, out_features: int, bias: bool, init: bool,
                 **factory: Any) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        # The same weight as GGML blocks for the decode kernel (not part of the state dict).
        self.quantized: quant.QuantizedWeight | None = None
        if init:
            nn.Linear.reset_parameters(self)  # type: ignore[arg-type]  # torch's exact init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, **factory: Any) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, **factory))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            rows = x.numel() // x.shape[-1]
            if rows <= quant.max_rows() and x.device.type == "cpu" and self.weight.is_contiguous():
                out = quant.rms_norm(x, self.weight, self.eps)  # decode: one C call
                if out is not None:
                    return out
            # torch's rms_norm: bit-identical to the formula below
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        # Half precision: normalise in fp32, round, then apply the weight, as transformers does.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def _join_on_load(parts: Sequence[str], fused: str, suffixes: Sequence[str]) -> Any:
    """A load_state_dict pre-hook that concatenates HF's separate tensors into our fused one."""
    def hook(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str,
             *_: Any) -> None:
        for suffix in suffixes:
            keys = [f"{prefix}{p}.{suffix}" for p in parts]
            if all(k in state_dict for k in keys):
                state_dict[f"{prefix}{fused}.{suffix}"] = torch.cat(
                    [state_dict.pop(k) for k in keys], dim=0)
    return hook


def _split_on_save(parts: Sequence[str], fused: str, sizes: Sequence[int]) -> Any:
    """A state_dict post-hook that splits our fused tensor back into HF's separate names.

    The pieces are cloned: views into one buffer could not be saved with safetensors."""
    def hook(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str,
             *_: Any) -> None:
        for suffix in ("weight", "bias"):
            key = f"{prefix}{fused}.{suffix}"
            if key in state_dict:
                chunks = torch.split(state_dict.pop(key), list(sizes))
                for name, chunk in zip(parts, chunks, strict=True):
                    state_dict[f"{prefix}{name}.{suffix}"] = chunk.clone()
    return hook


def _drop_tied_head(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str,
                    *_: Any) -> None:
    """Tied models have no separate head; HF state dicts may still list one. (Our own state dict
    omits it, as HF's safetensors files do: safetensors refuses tensors that share memory.)"""
    if getattr(module, "config").tie_word_embeddings:  # noqa: B009
        state_dict.pop(f"{prefix}lm_head.weight", None)


@dataclass
class _Step:
    """Everything about one forward's batch layout, computed once and shared by all layers."""

    positions: torch.Tensor  # [B, T] absolute position of every input token
    kv_len: int  # S: keys 0..S-1 of each row's slot are read
    slot_index: torch.Tensor | slice  # rows' cache slots: a slice when contiguous (no gather)
    mask: torch.Tensor | None  # [B, 1, R*T, S] bool, True = attend; None when nothing to hide
    # where new keys go: B == 1 writes a slice; otherwise (slot, position) per valid token
    write_slice: tuple[int, int, int] | None  # (slot, start, stop)
    write_slots: torch.Tensor | None  # [N]
    write_pos: torch.Tensor | None  # [N]
    valid_rows: torch.Tensor | None  # [N] indices into B*T of real (non-padding) tokens
    # decode steps given shared prefixes: every row in one group (engine.prefix_attention)
    groups: list[DecodeGroup] | None = None


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig, layer_idx: int, init: bool, **factory: Any) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_size, self.kv_size = config.q_size, config.kv_size
        self.qkv_proj = Linear(config.hidden_size, self.q_size + 2 * self.kv_size,
                               config.attention_bias, init, **factory)
        self.o_proj = Linear(self.q_size, config.hidden_size, config.attention_out_bias, init,
                             **factory)
        parts = ("q_proj", "k_proj", "v_proj")
        self.register_load_state_dict_pre_hook(  # type: ignore[no-untyped-call]
            _join_on_load(parts, "qkv_proj", ("weight", "bias")))
        self.register_state_dict_post_hook(  # type: ignore[no-untyped-call]
            _split_on_save(parts, "qkv_proj", (self.q_size, self.kv_size, self.kv_size)))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache,
                step: _Step) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hkv, hd = self.n_heads, self.n_kv, self.head_dim
        # Hot path: F.linear on the parameters and .forward() calls skip nn.Module.__call__'s
        # hook bookkeeping, which adds up over ~10 calls per layer and token.
        qkv = _linear(x, self.qkv_proj)  # [B, T, (H + 2*Hkv) * hd]
        # q and k are adjacent in the fused output: rotate both with one set of ops.
        qk = qkv[..., : self.q_size + self.kv_size].view(B, T, H + Hkv, hd)  # [B,T,H+Hkv,hd]
        qk = qk * cos + torch.roll(qk, hd // 2, dims=-1) * sin  # RoPE, HF's rotate_half layout
        q, k = torch.split(qk, [H, Hkv], dim=2)  # [B,T,H,hd], [B,T,Hkv,hd]
        v = qkv[..., self.q_size + self.kv_size:].view(B, T, Hkv, hd)  # [B,T,Hkv,hd]

        k_cache, v_cache = cache.k[self.layer_idx], cache.v[self.layer_idx]  # [slots,Hkv,max,hd]
        if step.write_slice is not None:
            slot, start, stop = step.write_slice
            k_cache[slot].narrow(1, start, stop - start).copy_(k[0, : stop - start].transpose(0, 1))
            v_cache[slot].narrow(1, start, stop - start).copy_(v[0, : stop - start].transpose(0, 1))
        else:
            assert step.write_slots is not None and step.write_pos is not None
            k_new, v_new = k.reshape(B * T, Hkv, hd), v.reshape(B * T, Hkv, hd)
            if step.valid_rows is not None:  # drop padding tokens
                k_new, v_new = k_new[step.valid_rows], v_new[step.valid_rows]
            k_cache[step.write_slots, :, step.write_pos] = k_new  # [N, Hkv, hd]
            v_cache[step.write_slots, :, step.write_pos] = v_new

        R = H // Hkv
        if step.groups is not None:  # decode (T == 1): shared prefixes read once per group
            out = grouped_decode_attention(q.reshape(B, Hkv, R, hd), k_cache, v_cache,
                                           step.groups)  # [B, Hkv, R, hd]
            return _linear(out.reshape(B, 1, H * hd), self.o_proj)
        keys = k_cache[step.slot_index, :, : step.kv_len]  # [B, Hkv, S, hd]
        values = v_cache[step.slot_index, :, : step.kv_len]
        # GQA without repeating K/V: fold each group's R query heads into the query-length axis,
        # so every kv head attends for R*T queries. [B,T,H,hd] -> [B,Hkv,R*T,hd]
        q = q.reshape(B, T, Hkv, R, hd).permute(0, 2, 3, 1, 4).reshape(B, Hkv, R * T, hd)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=step.mask)
        out = out.reshape(B, Hkv, R, T, hd).permute(0, 3, 1, 2, 4).reshape(B, T, H * hd)
        return _linear(out, self.o_proj)  # [B, T, D]


class MLP(nn.Module):
    def __init__(self, config: LlamaConfig, init: bool, **factory: Any) -> None:
        super().__init__()
        self.intermediate = config.intermediate_size
        self.gate_up_proj = Linear(config.hidden_size, 2 * self.intermediate, False, init,
                                   **factory)
        self.down_proj = Linear(self.intermediate, config.hidden_size, False, init, **factory)
        parts = ("gate_proj", "up_proj")
        self.register_load_state_dict_pre_hook(  # type: ignore[no-untyped-call]
            _join_on_load(parts, "gate_up_proj", ("weight",)))
        self.register_state_dict_post_hook(  # type: ignore[no-untyped-call]
            _split_on_save(parts, "gate_up_proj", (self.intermediate, self.intermediate)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = _linear(x, self.gate_up_proj)  # [B, T, 2*I]
        gate, up = torch.split(gate_up, self.intermediate, dim=-1)  # 2 x [B, T, I]
        return _linear(F.silu(gate) * up, self.down_proj)  # SwiGLU -> [B, T, D]


class DecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, layer_idx: int, init: bool, **factory: Any) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **factory)
        self.self_attn = Attention(config, layer_idx, init, **factory)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **factory)
        self.mlp = MLP(config, init, **factory)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache,
                step: _Step) -> torch.Tensor:
        x = x + self.self_attn.forward(self.input_layernorm.forward(x), cos, sin, cache, step)
        return x + self.mlp.forward(self.post_attention_layernorm.forward(x))


class LlamaModel(nn.Module):
    def __init__(self, config: LlamaConfig, init: bool, **factory: Any) -> None:
        super().__init__()
        shape = (config.vocab_size, config.hidden_size)
        self.embed_tokens = nn.Embedding(*shape, **factory) if init else nn.Embedding(
            *shape, _weight=torch.empty(shape, **factory))
        self.layers = nn.ModuleList(
            DecoderLayer(config, i, init, **factory) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, **factory)


class LlamaForCausalLM(nn.Module):
    """The decoder plus output head. Call :meth:`forward` under any grad mode; it runs in
    inference mode itself."""

    def __init__(self, config: LlamaConfig, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, init_weights: bool = True) -> None:
        """Random weights (torch's default init) unless ``init_weights=False``, which leaves them
        uninitialised for a checkpoint to replace (see :meth:`from_state_dict`)."""
        super().__init__()
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.config = config
        self.model = LlamaModel(config, init_weights, **factory)
        self.lm_head: Linear | None = None
        if not config.tie_word_embeddings:
            self.lm_head = Linear(config.hidden_size, config.vocab_size, False, init_weights,
                                  **factory)
        self.register_load_state_dict_pre_hook(_drop_tied_head)  # type: ignore[no-untyped-call]
        # RoPE cos/sin tables [positions, hd], grown on demand (a 128k-context table would be
        # hundreds of MB; most deployments use a few thousand positions).
        self.head_quantized: quant.QuantizedWeight | None = None  # see use_quantized
        self._cos = torch.empty(0)
        self._sin = torch.empty(0)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_state_dict(cls, config: LlamaConfig, state_dict: dict[str, torch.Tensor],
                        device: torch.device | str, dtype: torch.dtype) -> LlamaForCausalLM:
        """Build around existing tensors without copying them: ``state_dict`` uses HF names (or
        our fused ``qkv_proj``/``gate_up_proj`` names, which the GGUF loader fills directly)."""
        # Not the meta device: its first use imports torch's decomposition machinery (~5 s).
        model = cls(config, device="cpu", dtype=dtype, init_weights=False)
        placed = {k: v.to(device=device, dtype=dtype) for k, v in state_dict.items()}
        model.load_state_dict(placed, strict=True, assign=True)
        return model.requires_grad_(False).eval()

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    @property
    def decode_weights(self) -> str:
        """What decode steps multiply by: "ggml-blocks" (the C kernel) or "dense" (fp32 etc.)."""
        quantized = self.head_quantized is not None or any(
            isinstance(m, Linear) and m.quantized is not None for m in self.modules())
        return "ggml-blocks" if quantized else "dense"

    def head_weight(self) -> torch.Tensor:
        return self.lm_head.weight if self.lm_head is not None else self.model.embed_tokens.weight

    def use_quantized(self, weights: Mapping[str, quant.QuantizedWeight]) -> None:
        """Attach GGML-block copies of linear weights for the decode kernel (``engine.quant``).

        Keys are module names (``model.layers.0.self_attn.qkv_proj``, ``lm_head`` also for a
        tied head); each must hold exactly the module's fp32 weight, which stays in use for
        prompts. Only for fp32 models on the CPU, where the kernel runs."""
        if self.device.type != "cpu" or self.dtype != torch.float32:
            raise ValueError("quantised decode weights need an fp32 model on the CPU")
        for name, qw in weights.items():
            module = None if name == "lm_head" else self.get_submodule(name)
            if module is not None and not isinstance(module, Linear):
                raise ValueError(f"{name} is not a linear layer")
            shape = tuple((self.head_weight() if module is None else module.weight).shape)
            if (qw.out_features, qw.in_features) != shape:
                raise ValueError(f"{name}: quantised weight is {qw.out_features}x"
                                 f"{qw.in_features}, the module's is {shape}")
            if module is None:
                self.head_quantized = qw
            else:
                module.quantized = qw

    def new_cache(self, n_slots: int, max_len: int) -> KVCache:
        """A KV cache matching this model's device and dtype."""
        return KVCache(self.config, n_slots, max_len, self.device, self.dtype)

    def _rope_tables(self, n_positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cos.shape[0] < n_positions or self._cos.device != self.device:
            n = max(n_positions, 256, 2 * self._cos.shape[0])
            inv_freq = rope_inv_freq(self.config).to(self.device)
            freqs = torch.arange(n, device=self.device, dtype=torch.float)[:, None] * inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)  # [n, hd]
            half = self.config.head_dim // 2
            sign = torch.ones(self.config.head_dim, device=self.device)
            sign[:half] = -1.0  # rotate_half(x) == roll(x, hd/2) * [-1..., +1...]
            self._cos = emb.cos().to(self.dtype)
            self._sin = (emb.sin() * sign).to(self.dtype)
        return self._cos, self._sin

    def _plan(self, B: int, T: int, cache: KVCache, start_pos: Sequence[int],
              slots: Sequence[int], lengths: Sequence[int],
              shared_prefix: Sequence[tuple[Sequence[int], int]] | None = None) -> _Step:
        device = self.device
        ends = [s + n for s, n in zip(start_pos, lengths, strict=True)]
        kv_len = max(ends)
        if kv_len > cache.max_len:
            raise ContextLengthExceeded(
                f"a row needs {kv_len} cache positions; the cache holds {cache.max_len}")
        if min(lengths) < 1 or max(lengths) > T:
            raise ValueError(f"lengths must be in 1..{T}, got {list(lengths)}")
        starts = torch.tensor(list(start_pos), device=device)
        positions = starts[:, None] + torch.arange(T, device=device)  # [B, T]
        s0 = slots[0]
        contiguous = list(slots) == list(range(s0, s0 + B))
        slot_index: torch.Tensor | slice = (
            slice(s0, s0 + B) if contiguous else torch.tensor(list(slots), device=device))

        # A mask is needed unless every row has exactly one new token at the same position.
        mask = None
        window = self.config.sliding_window
        needs_window = window is not None and kv_len > window
        if T > 1 or len(set(ends)) > 1 or needs_window:
            last = torch.tensor([e - 1 for e in ends], device=device)
            # Padding queries look only at real keys: their output is discarded, but must be finite.
            q_pos = torch.minimum(positions, last[:, None])  # [B, T]
            key_pos = torch.arange(kv_len, device=device)  # [S]
            allowed = key_pos[None, None, :] <= q_pos[:, :, None]  # [B, T, S]
            if needs_window:
                assert window is not None
                allowed &= key_pos[None, None, :] > q_pos[:, :, None] - window
            R = self.config.num_attention_heads // self.config.num_key_value_heads
            # folded GQA queries are ordered (group member, token): repeat the T rows R times
            mask = allowed[:, None].expand(B, R, T, kv_len).reshape(B, 1, R * T, kv_len)

        groups = None
        if shared_prefix:
            if T != 1:
                raise ValueError("shared_prefix is for decode steps (one new token per row)")
            if not needs_window:  # a sliding window would cut into the shared prefix
                groups = plan_groups(shared_prefix, slots, ends, device)
        if B == 1:
            return _Step(positions, kv_len, slot_index, mask, (slots[0], start_pos[0], ends[0]),
                         None, None, None, groups)
        padded = any(n != T for n in lengths)
        valid_rows = None
        if padded:
            flat = [b * T + t for b in range(B) for t in range(lengths[b])]
            valid_rows = torch.tensor(flat, device=device)
            write_slots = torch.tensor([slots[i // T] for i in flat], device=device)
            write_pos = positions.reshape(-1)[valid_rows]
        else:
            write_slots = torch.tensor(list(slots), device=device).repeat_interleave(T)
            write_pos = positions.reshape(-1)
        return _Step(positions, kv_len, slot_index, mask, None, write_slots, write_pos, valid_rows,
                     groups)

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        cache: KVCache,
        start_pos: Sequence[int],
        slots: Sequence[int] | None = None,
        lengths: Sequence[int] | None = None,
        last_only: bool = False,
        shared_prefix: Sequence[tuple[Sequence[int], int]] | None = None,
    ) -> torch.Tensor:
        """Run ``input_ids`` [B, T] through the model, appending their keys/values to the cache.

        ``start_pos[b]``: tokens already cached in row b's slot (= position of its first input).
        ``slots[b]``: the cache slot of row b (default ``range(B)``).
        ``lengths[b]``: real tokens in row b, the rest is right padding (default all ``T``).
        ``shared_prefix``: decode steps only (T == 1): groups ``(rows, L)`` of rows whose slots
        hold identical keys/values for positions < L (copied from one prefix-cache entry); the
        prefix is then read once per group instead of once per row.
        Returns logits [B, T, V], or [B, V] at each row's last real token when ``last_only``.
        """
        B, T = input_ids.shape
        slots = list(range(B)) if slots is None else slots
        lengths = [T] * B if lengths is None else lengths
        step = self._plan(B, T, cache, start_pos, slots, lengths, shared_prefix)
        cos_table, sin_table = self._rope_tables(step.kv_len)
        cos = cos_table[step.positions].unsqueeze(2)  # [B, T, 1, hd], broadcast over heads
        sin = sin_table[step.positions].unsqueeze(2)

        h = self.model.embed_tokens(input_ids)  # [B, T, D]
        for layer in self.model.layers:
            h = layer.forward(h, cos, sin, cache, step)
        if last_only and T == 1:
            h = h[:, 0]  # [B, D]
        elif last_only:
            last = torch.tensor([n - 1 for n in lengths], device=h.device)
            h = h[torch.arange(B, device=h.device), last]  # [B, D]
        h = self.model.norm.forward(h)
        rows = h.numel() // h.shape[-1]
        head_q = self.head_quantized
        if head_q is not None and rows <= quant.max_rows() and h.dtype == torch.float32:
            return head_q.matmul(h)  # [B, (T,) V]
        if h.dim() == 2 and h.shape[0] > 1 and h.device.type == "cpu":
            # A few rows through the vocabulary-sized head: as ``weight @ h.T`` MKL streams the
            # weight once, where F.linear's GEMM packs all of it first (2-3x slower on CPU for
            # 2..16 rows). Same dot products; the result is a transposed view.
            return torch.mm(self.head_weight(), h.t()).t()  # [B, V]
        return F.linear(h, self.head_weight())  # [B, (T,) V]
