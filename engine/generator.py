"""The high-level text generator: a loaded model, its tokenizer and a reusable KV cache.

    gen = load_generator()  # $SUPPORTBOT_MODEL or the bundled SmolLM2
    prompt = gen.chat_prompt([{"role": "user", "content": "How do I reset my password?"}])
    [result] = gen.generate([prompt], SamplingParams(max_new_tokens=64))

One request (batch) at a time per Generator; a serving loop that interleaves requests builds on
:class:`engine.llama.LlamaForCausalLM` and :class:`engine.llama.KVCache` directly.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from engine.config import LlamaConfig
from engine.defaults import default_model_path
from engine.device import Placement
from engine.errors import ContextLengthExceeded
from engine.generate import GenerationResult, generate
from engine.llama import KVCache, LlamaForCausalLM
from engine.loader import LoadedModel, load_model
from engine.sampling import SamplingParams
from engine.threads import releases_openmp_threads
from engine.tokenizer import Tokenizer

_CACHE_ROUNDING = 256  # grow the cache in steps, so slightly longer prompts don't reallocate


class Generator:
    def __init__(self, loaded: LoadedModel, max_context: int | None = None) -> None:
        self.path = loaded.path
        self.model: LlamaForCausalLM = loaded.model
        self.tokenizer: Tokenizer = loaded.tokenizer
        self.config: LlamaConfig = loaded.config
        limit = self.config.max_position_embeddings
        if self.config.sliding_window:
            limit = min(limit, self.config.sliding_window)
        self.max_context = min(limit, max_context) if max_context else limit
        self._cache: KVCache | None = None
        self._lock = threading.Lock()  # the cache is shared state

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]], **template_vars: Any) -> list[int]:
        """Token ids of ``messages`` in the model's chat format, ready for the assistant reply."""
        return self.tokenizer.chat_prompt(messages, **template_vars)

    @releases_openmp_threads
    def generate(self, prompt_ids_list: Sequence[Sequence[int]],
                 params: SamplingParams | None = None) -> list[GenerationResult]:
        """Complete every prompt (batched); results are in prompt order."""
        params = params or SamplingParams()
        if not prompt_ids_list:
            return []
        longest = max(len(p) for p in prompt_ids_list)
        if longest >= self.max_context:
            raise ContextLengthExceeded(
                f"prompt of {longest} tokens does not fit the {self.max_context}-token context")
        needed = min(longest + params.max_new_tokens, self.max_context)
        with self._lock:
            cache = self._cache_for(len(prompt_ids_list), needed)
            return generate(self.model, self.tokenizer, prompt_ids_list, params, cache)

    def _cache_for(self, n_rows: int, length: int) -> KVCache:
        cache = self._cache
        if cache is None or cache.n_slots < n_rows or cache.max_len < length:
            rounded = -(-length // _CACHE_ROUNDING) * _CACHE_ROUNDING
            max_len = min(max(rounded, cache.max_len if cache else 0), self.max_context)
            n_slots = max(n_rows, cache.n_slots if cache else 0)
            self._cache = None  # free the old one before allocating
            cache = self._cache = self.model.new_cache(n_slots, max_len)
        return cache


def load_generator(path: str | None = None, placement: Placement | None = None,
                   max_context: int | None = None) -> Generator:
    """Load a GGUF file or HF directory (default: ``$SUPPORTBOT_MODEL``, then the bundled model)."""
    return Generator(load_model(path or default_model_path(), placement), max_context=max_context)
