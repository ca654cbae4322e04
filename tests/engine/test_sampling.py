"""Sampling functions against transformers' logits processors, and seeded reproducibility."""

from __future__ import annotations

import pytest
import torch

from engine.sampling import (
    SamplingParams,
    apply_repetition_penalty,
    choose_next,
    greedy,
    sample,
    token_logprobs,
    top_k_filter,
    top_p_filter,
)


@pytest.fixture
def logits() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(3, 50) * 3


def test_repetition_penalty_matches_transformers(logits: torch.Tensor) -> None:
    from transformers import RepetitionPenaltyLogitsProcessor

    history = torch.tensor([[1, 2, 3, 3], [7, 8, 9, 10], [0, 0, 0, 49]])
    seen = torch.zeros(3, 50, dtype=torch.bool).scatter(1, history, True)
    expected = RepetitionPenaltyLogitsProcessor(1.3)(history, logits.clone())
    torch.testing.assert_close(apply_repetition_penalty(logits, seen, 1.3), expected)


@pytest.mark.parametrize("k", [1, 5, 49])
def test_top_k_matches_transformers(logits: torch.Tensor, k: int) -> None:
    from transformers import TopKLogitsWarper

    expected = TopKLogitsWarper(k)(None, logits.clone())
    assert torch.equal(top_k_filter(logits, k), expected)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999])
def test_top_p_matches_transformers(logits: torch.Tensor, p: float) -> None:
    from transformers import TopPLogitsWarper

    expected = TopPLogitsWarper(p)(None, logits.clone())
    assert torch.equal(top_p_filter(logits, p), expected)


def test_greedy_and_logprobs(logits: torch.Tensor) -> None:
    tokens = greedy(logits)
    assert tokens.tolist() == logits.argmax(-1).tolist()
    lp = token_logprobs(logits, tokens)
    torch.testing.assert_close(lp, torch.log_softmax(logits, -1).max(-1).values)


def test_seeded_sampling_is_per_row_reproducible(logits: torch.Tensor) -> None:
    def gens() -> list[torch.Generator | None]:
        return [torch.Generator().manual_seed(7) for _ in range(3)]

    a, b = sample(logits, gens()), sample(logits, gens())
    assert torch.equal(a, b)
    # a row's draw does not depend on the other rows in the batch
    alone = sample(logits[1:2], [torch.Generator().manual_seed(7)])
    assert alone.item() == a[1].item()


def test_choose_next_restricts_to_top_k(logits: torch.Tensor) -> None:
    params = SamplingParams(temperature=1.5, top_k=2, seed=1)
    top2 = logits.topk(2).indices
    for seed in range(20):
        tokens, lp = choose_next(logits, params, None,
                                 [torch.Generator().manual_seed(seed) for _ in range(3)])
        assert all(t in row for t, row in zip(tokens.tolist(), top2.tolist(), strict=True))
        assert (lp <= 0).all()


def test_params_validation() -> None:
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1)
    assert SamplingParams().greedy
