"""A BERT-family encoder for sentence embeddings, in one readable module.

    tokens ──► word + position + token-type embeddings ──► LayerNorm
           ──► N × [ self-attention ─► add & LayerNorm ─► GELU feed-forward ─► add & LayerNorm ]
           ──► mean over non-pad tokens ──► L2 normalise ──► sentence vector

This is the original "post-LN" BERT: LayerNorm comes *after* each residual add. Module and
parameter names mirror the HF checkpoint keys (``encoder.layer.0.attention.self.query.weight``)
so a ``model.safetensors`` loads with no renaming and what we save loads in transformers too.

The module is trainable: `forward` has no ``inference_mode``/``no_grad`` and honours dropout in
train mode, so a contrastive fine-tune can call `BertModel.encode` directly. Shapes in comments:
B batch, T tokens (padded), H hidden size, nh heads, hd head size (H = nh·hd), I FFN size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.bert_config import BertConfig
from engine.errors import CorruptModelFile

__all__ = ["BertConfig", "BertModel", "l2_normalize", "load_bert_weights", "mean_pool"]


def _activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()  # exact erf GELU, as BERT was trained
    if name == "relu":
        return nn.ReLU()
    return nn.GELU(approximate="tanh")  # gelu_new / gelu_pytorch_tanh / gelu_fast


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        T = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # [B, T, H]
        x = x + self.position_embeddings.weight[:T]  # [T, H] broadcast over B; positions 0..T-1
        if token_type_ids is None:
            # Single sentences are all segment 0: add that one row instead of gathering B·T rows.
            x = x + self.token_type_embeddings.weight[0]  # [H]
        else:
            x = x + self.token_type_embeddings(token_type_ids)  # [B, T, H]
        out: Tensor = self.dropout(self.LayerNorm(x))  # [B, T, H]
        return out


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        self.dropout_p = cfg.attention_probs_dropout_prob
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        B, T, H = x.shape

        def heads(t: Tensor) -> Tensor:  # [B, T, H] -> [B, nh, T, hd]
            return t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        # mask: [B, 1, 1, T] bool, True = attend (a real token). Every query row can see at
        # least its own [CLS], so no row is fully masked (which would give NaNs).
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
        )  # [B, nh, T, hd]
        return ctx.transpose(1, 2).reshape(B, T, H)  # [B, T, H]


class BertSelfOutput(nn.Module):
    """Projection back to H, then the post-LN residual: LayerNorm(residual + sublayer(x))."""

    def __init__(self, cfg: BertConfig, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        out: Tensor = self.LayerNorm(residual + self.dropout(self.dense(h)))  # [B, T, H]
        return out


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(cfg)  # the name "self" is what the checkpoints use
        self.output = BertSelfOutput(cfg, cfg.hidden_size)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        out: Tensor = self.output(self.self(x, mask), x)  # [B, T, H]
        return out


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = _activation(cfg.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.act(self.dense(x))  # [B, T, I]
        return out


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, cfg.intermediate_size)  # I -> H, add & LayerNorm

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.attention(x, mask)  # [B, T, H]
        out: Tensor = self.output(self.intermediate(x), x)  # [B, T, H]
        return out


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))


class BertModel(nn.Module):
    """The encoder stack. `forward` gives token states; `encode` gives sentence vectors."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    @property
    def layers(self) -> list[BertLayer]:
        """The encoder layers, typed (nn.ModuleList hands out plain Modules)."""
        return cast(list[BertLayer], list(self.encoder.layer))

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """input_ids [B, T] int64, attention_mask [B, T] (1 = token, 0 = pad) or None when the
        batch has no padding. Returns the last hidden states [B, T, H] in the model's dtype."""
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence of {input_ids.shape[1]} tokens exceeds max_position_embeddings="
                f"{self.config.max_position_embeddings}; truncate in the tokenizer"
            )
        mask = None
        if attention_mask is not None:
            mask = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, T]: keys each query sees
        x: Tensor = self.embeddings(input_ids, token_type_ids)  # [B, T, H]
        for layer in self.encoder.layer:
            x = layer(x, mask)  # [B, T, H]
        return x

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Sentence vectors [B, H]: mean of non-pad token states, L2-normalised, in float32.

        Differentiable (use it in a fine-tuning loss); wrap in ``torch.inference_mode`` to serve.
        """
        return l2_normalize(mean_pool(self(input_ids, attention_mask), attention_mask))


def mean_pool(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """hidden [B, T, H], attention_mask [B, T] or None -> [B, H] float32.

    Pooling runs in fp32 because summing up to 512 bf16/fp16 token vectors loses precision.
    """
    h = hidden.float()
    if attention_mask is None:
        return h.mean(dim=1)
    m = attention_mask.to(torch.float32).unsqueeze(1)  # [B, 1, T]
    summed = torch.bmm(m, h).squeeze(1)  # [B, H]: masked sum over tokens as one matmul
    counts = m.sum(dim=2).clamp(min=1e-9)  # [B, 1]
    return summed / counts


def l2_normalize(x: Tensor) -> Tensor:
    """[N, H] -> unit-length rows (fp32 in, fp32 out), so cosine similarity is a dot product."""
    return F.normalize(x, p=2.0, dim=-1, eps=1e-12)


# Very old (TF-converted) checkpoints name LayerNorm parameters gamma/beta.
_LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


def _normalise_key(key: str) -> str:
    if key.startswith("bert."):  # BertForMaskedLM / BertForSequenceClassification checkpoints
        key = key[len("bert.") :]
    for old, new in _LEGACY_SUFFIXES.items():
        if "LayerNorm" in key and key.endswith(old):
            key = key[: -len(old)] + new
    return key


def load_bert_weights(model: BertModel, tensors: Mapping[str, Tensor], source: str) -> None:
    """Copy checkpoint tensors into `model`, failing with `CorruptModelFile` naming `source`
    for any missing key or wrong shape (a truncated or mismatched file), never half-loading."""
    # Keys outside the encoder are ignored on purpose: the [CLS] pooler (we mean-pool), the
    # position-id buffer older transformers saved, and task heads of BertFor* checkpoints.
    state = {_normalise_key(key): tensor for key, tensor in tensors.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise CorruptModelFile(source, f"missing {len(missing)} BERT weights: {shown}")
    for key, param in expected.items():
        if tuple(state[key].shape) != tuple(param.shape):
            raise CorruptModelFile(
                source,
                f"weight {key} has shape {tuple(state[key].shape)}, config expects "
                f"{tuple(param.shape)}"
            )
    model.load_state_dict({key: state[key] for key in expected}, strict=True)
