"""Prefill + decode loop over the KV cache, for a batch of prompts of different lengths.

Rows leave the batch as they finish (EOS, stop string, or length), so a long answer does not make
short ones pay for its decode steps. :class:`TextAssembler` is the piece a streaming server needs
too: it turns tokens into text incrementally and never releases text that might turn out to be
the beginning of a stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from engine.errors import ContextLengthExceeded
from engine.llama import KVCache, LlamaForCausalLM
from engine.sampling import SamplingParams, choose_next
from engine.tokenizer import Tokenizer


@dataclass
class GenerationResult:
    """``text`` excludes the stop string and EOS; ``token_ids``/``logprobs`` list every sampled
    token (including a final EOS, or the tokens that spelled a stop string). ``finish_reason`` is
    "stop" (EOS or stop string) or "length" (max_new_tokens or the context was used up)."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"


class TextAssembler:
    """Incremental detokenisation with stop strings.

    Each :meth:`push` returns the text that became final. Text is held back while it ends in an
    incomplete UTF-8 sequence or in a prefix of a stop string, so no partial stop text is ever
    emitted; once a stop string appears, :attr:`stopped` is set and the text ends before it.
    Text already released is never revised (byte-level BPE decoding is prefix-stable).
    """

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.text = ""  # released so far
        self.stopped = False

    def push(self, token_id: int) -> str:
        if self.stopped:
            return ""
        self.ids.append(token_id)
        full = self.tokenizer.decode(self.ids)
        # earliest stop string occurrence in text not yet released (it may straddle the boundary)
        search_from = max(0, len(self.text) - max((len(s) for s in self.stop), default=0))
        cut = min((i for s in self.stop if (i := full.find(s, search_from)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            return self._release(full[:cut])
        end = len(full)
        while end > len(self.text) and full[end - 1] == "\ufffd":  # unfinished multi-byte char
            end -= 1
        end -= self._held_suffix(full[:end])
        return self._release(full[:max(end, len(self.text))])

    def finish(self) -> str:
        """Generation ended without a stop string: release what is held, except a tail that
        starts a stop string (a cut-off "\nUs" of "\nUser:" is still partial stop text)."""
        if self.stopped:
            return ""
        full = self.tokenizer.decode(self.ids)
        return self._release(full[:max(len(full) - self._held_suffix(full), len(self.text))])

    def _held_suffix(self, text: str) -> int:
        """Length of the longest tail of ``text`` that starts some stop string."""
        for n in range(min(len(text), max((len(s) for s in self.stop), default=0)), 0, -1):
            tail = text[-n:]
            if any(s.startswith(tail) for s in self.stop):
                return n
        return 0

    def _release(self, upto: str) -> str:
        delta = upto[len(self.text):]
        self.text = upto
        return delta


def generate(
    model: LlamaForCausalLM,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    cache: KVCache,
    slots: Sequence[int] | None = None,
) -> list[GenerationResult]:
    """Generate a completion for each prompt, batched, using ``cache`` slots ``slots``."""
    B = len(prompts)
    if B == 0:
        return []
    slots = list(range(B)) if slots is None else list(slots)
    if len(slots) != B or len(set(slots)) != B or max(slots) >= cache.n_slots:
        raise ValueError(f"need {B} distinct cache slots below {cache.n_slots}, got {slots}")
    lengths = [len(p) for p in prompts]
    if min(lengths) == 0:
        raise ValueError("empty prompt")
    if max(lengths) >= cache.max_len:
        raise ContextLengthExceeded(
            f"prompt of {max(lengths)} tokens leaves no room in a {cache.max_len}-token context")
    device = model.device
    results = [GenerationResult(text="") for _ in range(B)]
    if params.max_new_tokens == 0:
        return results
    eos = set() if params.ignore_eos else set(tokenizer.eos_token_ids)
    texts = [TextAssembler(tokenizer, params.stop) for _ in range(B)]
    budget = [min(params.max_new_tokens, cache.max_len - n) for n in lengths]
    generators: list[torch.Generator | None] = [None] * B
    if params.seed is not None and not params.greedy:
        generators = [torch.Generator(device=device).manual_seed(params.seed) for _ in range(B)]
    seen = None
    if params.repetition_penalty != 1.0:
        seen = torch.zeros(B, model.config.vocab_size, dtype=torch.bool, device=device)
        for b, p in enumerate(prompts):
            seen[b, torch.tensor(list(p), device=device)] = True

    # Prefill: all prompts in one right-padded batch; only the last position's logits are needed.
    T = max(lengths)
    ids = torch.zeros(B, T, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, : len(p)] = torch.tensor(list(p))
    logits = model(ids.to(device), cache, [0] * B, slots=slots, lengths=lengths, last_only=True)

    active = list(range(B))  # rows still generating, in batch order
    positions = list(lengths)  # next position to write for each row
    while active:
        row_seen = None if seen is None else seen[active]
        tokens, logprobs = choose_next(logits, params, row_seen,
                                       [generators[b] for b in active])
        still: list[int] = []
        for tok, lp, b in zip(tokens.tolist(), logprobs.tolist(), active, strict=True):
            res = results[b]
            res.token_ids.append(tok)
            res.logprobs.append(lp)
            if seen is not None:
                seen[b, tok] = True
            if tok in eos:
                res.finish_reason = "stop"
                continue
            texts[b].push(tok)
            if texts[b].stopped:
                res.finish_reason = "stop"
            elif len(res.token_ids) >= budget[b]:
                res.finish_reason = "length"
            else:
                still.append(b)
        active = still
        if not active:
            break
        step_ids = torch.tensor([[results[b].token_ids[-1]] for b in active], device=device)
        logits = model(step_ids, cache, [positions[b] for b in active],
                       slots=[slots[b] for b in active], last_only=True)
        for b in active:
            positions[b] += 1

    for b in range(B):
        texts[b].finish()
        results[b].text = texts[b].text
    return results
