"""Pick the next token for every row of a batch, each row with its own request's settings.

Greedy rows (the bot's default) share one argmax over the whole batch; only rows that sample
or penalise repetition go through ``engine.sampling.choose_next`` one by one, each with its
own seeded generator, so a request's output does not depend on what shares its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.requests import GenerationParams
from engine.sampling import SamplingParams, choose_next, greedy, token_logprobs


def row_params(params: GenerationParams) -> SamplingParams:
    return SamplingParams(max_new_tokens=params.max_tokens, temperature=params.temperature,
                          top_k=params.top_k, top_p=params.top_p,
                          repetition_penalty=params.repetition_penalty, seed=params.seed,
                          stop=params.stop, ignore_eos=params.ignore_eos)


def sample_batch(logits: torch.Tensor, params: Sequence[SamplingParams],
                 generators: Sequence[torch.Generator | None],
                 histories: Sequence[Sequence[int]]) -> tuple[list[int], list[float]]:
    """logits: [B, V]. Returns each row's token and its log-probability under the model's own
    distribution. ``histories[b]`` (prompt + generated ids) feeds the repetition penalty."""
    logits = logits.float()
    chosen = greedy(logits)  # [B]
    for b, p in enumerate(params):
        if p.greedy and p.repetition_penalty == 1.0:
            continue
        seen = None
        if p.repetition_penalty != 1.0 and histories[b]:
            seen = torch.zeros((1, logits.shape[-1]), dtype=torch.bool, device=logits.device)
            seen[0, torch.tensor(list(histories[b]), device=logits.device)] = True
        token, _ = choose_next(logits[b:b + 1], p, seen, [generators[b]])
        chosen[b] = token[0]
    return chosen.tolist(), token_logprobs(logits, chosen).tolist()
