"""Pick the next token for every row of a batch, each row with its own sampling settings.

Greedy rows (the bot's default) share one argmax over the whole batch; only rows that sample
pay for sorting, and each of those draws from its own seeded generator so a request's output
does not depend on which other requests happened to share its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.requests import SamplingParams


def _penalise(row: torch.Tensor, seen: Sequence[int], penalty: float) -> torch.Tensor:
    """CTRL-style repetition penalty (as transformers): shrink the logits of seen tokens."""
    if penalty == 1.0 or not seen:
        return row
    idx = torch.tensor(sorted(set(seen)), device=row.device)
    vals = row[idx]
    row = row.clone()
    row[idx] = torch.where(vals > 0, vals / penalty, vals * penalty)
    return row


def _sample_row(row: torch.Tensor, p: SamplingParams, gen: torch.Generator | None) -> int:
    """row: [V] float32 logits (already penalised)."""
    logits = row / p.temperature
    if p.top_k > 0 and p.top_k < logits.shape[-1]:
        kth = torch.topk(logits, p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # drop tokens once the mass before them already reaches top_p (keep at least one)
        drop = (cum - sorted_logits.softmax(-1)) >= p.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)
    probs = logits.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=gen).item())


def sample_batch(logits: torch.Tensor, params: Sequence[SamplingParams],
                 generators: Sequence[torch.Generator | None],
                 histories: Sequence[Sequence[int]]) -> tuple[list[int], list[float]]:
    """logits: [B, V]. Returns the chosen token of each row and its log-probability under the
    model's own distribution. ``histories[b]`` (prompt + generated ids) feeds the penalty."""
    logits = logits.float()
    logprobs = torch.log_softmax(logits, dim=-1)  # [B, V]
    chosen = logits.argmax(dim=-1).tolist()  # greedy for every row, replaced below if sampling
    for b, p in enumerate(params):
        if p.greedy and p.repetition_penalty == 1.0:
            continue
        row = _penalise(logits[b], histories[b], p.repetition_penalty)
        chosen[b] = int(row.argmax().item()) if p.greedy else _sample_row(row, p, generators[b])
    index = torch.tensor(chosen, device=logits.device)
    picked = logprobs.gather(1, index[:, None])[:, 0].tolist()
    return [int(t) for t in chosen], [float(x) for x in picked]
