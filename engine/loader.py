"""Load a generation model from whatever the path is: a GGUF file or a Hugging Face directory."""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.config import LlamaConfig
from engine.device import Placement
from engine.errors import ModelNotFound
from engine.llama import LlamaForCausalLM
from engine.threads import releases_openmp_threads
from engine.tokenizer import Tokenizer


@dataclass
class LoadedModel:
    path: str
    config: LlamaConfig
    model: LlamaForCausalLM
    tokenizer: Tokenizer


@releases_openmp_threads
def load_model(path: str | os.PathLike[str], placement: Placement | None = None) -> LoadedModel:
    """A ``.gguf`` file, or a directory with ``config.json`` + safetensors + ``tokenizer.json``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        from engine.hf_loader import load_hf_dir

        return load_hf_dir(path, placement)
    if os.path.isfile(path):
        from engine.gguf_loader import load_gguf

        return load_gguf(path, placement)
    raise ModelNotFound(path, "no such model file or directory")
