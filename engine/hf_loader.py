"""Load a Hugging Face model directory: ``config.json`` + ``*.safetensors`` + ``tokenizer.json``.

Our decoder uses HF parameter names, so the safetensors load as they are (Llama, Mistral, Qwen2,
SmolLM); tensors are read through safetensors' mmap and cast once to the compute dtype.
"""

from __future__ import annotations

import glob
import json
import os

import torch
from safetensors import SafetensorError, safe_open

from engine.config import LlamaConfig
from engine.device import Placement, pick_placement
from engine.errors import CorruptModelFile, ModelLoadError, ModelNotFound
from engine.llama import LlamaForCausalLM
from engine.loader import LoadedModel
from engine.tokenizer import Tokenizer

# Keys some checkpoints carry that are not weights (recomputed at runtime).
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def load_hf_dir(directory: str | os.PathLike[str],
                placement: Placement | None = None) -> LoadedModel:
    directory = os.fspath(directory)
    placement = placement or pick_placement()
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise ModelNotFound(directory, "no config.json: not a Hugging Face model directory")
    try:
        with open(config_path, encoding="utf-8") as f:
            raw_config = json.load(f)
    except json.JSONDecodeError as e:
        raise CorruptModelFile(config_path, f"invalid JSON ({e})") from e
    config = LlamaConfig.from_hf_dict(raw_config, path=config_path)
    tokenizer = Tokenizer.from_hf_dir(directory)
    files = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
    if not files:
        raise ModelNotFound(directory, "no *.safetensors weight files")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            with safe_open(file, framework="pt", device="cpu") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open is not a Mapping
                    if key.endswith(_IGNORED_SUFFIXES):
                        continue
                    state[key] = f.get_tensor(key).to(device=placement.device,
                                                      dtype=placement.dtype)
        except (SafetensorError, OSError) as e:
            raise CorruptModelFile(file, f"cannot read safetensors ({e})") from e
    try:
        model = LlamaForCausalLM.from_state_dict(config, state, placement.device, placement.dtype)
    except RuntimeError as e:  # missing/unexpected keys, shape mismatches
        raise ModelLoadError(directory, f"weights do not match config.json: {e}") from e
    return LoadedModel(directory, config, model, tokenizer)
