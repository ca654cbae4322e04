"""Choosing the next token from logits: pure functions over ``[B, V]`` tensors.

Semantics follow transformers' logits processors (repetition penalty, temperature, top-k, top-p,
in that order), so results are comparable with ``model.generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How to generate. ``temperature == 0`` means greedy (argmax)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1.0: no nucleus filter
    repetition_penalty: float = 1.0  # 1.0: none; >1 discourages tokens already in the sequence
    seed: int | None = None  # every row gets its own generator seeded with this
    stop: tuple[str, ...] = ()  # stop strings; the text ends before the first one
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError("max_new_tokens must be >= 0")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor,
                             penalty: float) -> torch.Tensor:
    """CTRL-style penalty on tokens marked in ``seen`` [B, V] (bool): positive logits are
    divided by ``penalty``, negative ones multiplied, so both become less likely."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits if temperature in (0.0, 1.0) else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest logits of each row (ties at the boundary are kept)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of top tokens whose probability mass reaches ``p`` (at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[..., -1] = False  # the most likely token always survives
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """Argmax per row: ``[B, V] -> [B]``."""
    return logits.argmax(dim=-1)


def sample(logits: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """One draw per row from softmax(logits), row ``b`` using ``generators[b]``: ``[B, V] -> [B]``.

    Per-row generators make a seeded request's output independent of what it is batched with.
    """
    probs = logits.float().softmax(dim=-1)
    rows = [torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(generators)]
    return torch.cat(rows)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of ``tokens`` [B] under the model's unprocessed distribution ``logits``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens[:, None])[:, 0]


def choose_next(logits: torch.Tensor, params: SamplingParams, seen: torch.Tensor | None,
                generators: Sequence[torch.Generator | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``params`` to ``logits`` [B, V]; return (next tokens [B], their logprobs [B])."""
    processed = logits
    if seen is not None:
        processed = apply_repetition_penalty(processed, seen, params.repetition_penalty)
    if params.greedy:
        tokens = greedy(processed)
    else:
        processed = apply_temperature(processed, params.temperature)
        processed = top_k_filter(processed, params.top_k)
        processed = top_p_filter(processed, params.top_p)
        tokens = sample(processed, generators)
    return tokens, token_logprobs(logits, tokens)
