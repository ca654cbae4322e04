"""The real SmolLM2 through the AsyncEngine: concurrent, prefix-cached, batched answers equal
the engine's plain one-request generator (engine.generator) token for token."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.async_engine import AsyncEngine, EngineConfig, GenerationParams
from engine.sampling import SamplingParams

SYSTEM = ("You are the support assistant of Tallyhub. Answer in one short sentence from this "
          "article: open Settings, then Security, and choose Reset password; the link "
          "arrives within five minutes.")
QUESTIONS = ["How do I reset my password?", "The reset link never arrived, what now?",
             "Where is the security page?"]


@pytest.fixture(scope="session")
def smollm() -> Any:
    from engine.generator import load_generator

    return load_generator()


@pytest.mark.slow
async def test_concurrent_engine_answers_equal_single_request_generation(smollm: Any) -> None:
    prompts = [smollm.chat_prompt([{"role": "system", "content": SYSTEM},
                                   {"role": "user", "content": q}]) for q in QUESTIONS]
    alone = [smollm.generate([p], SamplingParams(max_new_tokens=12, ignore_eos=True))[0]
             for p in prompts]
    engine = AsyncEngine(smollm.model, smollm.tokenizer, EngineConfig(max_len=256, max_batch=4))
    params = GenerationParams(max_tokens=12, ignore_eos=True)

    async def answer(prompt: list[int]) -> tuple[list[int], str]:
        chunks = [c async for c in engine.submit(prompt, params)]
        return [t for c in chunks for t in c.token_ids], "".join(c.text for c in chunks)

    try:
        together = await asyncio.gather(*(answer(p) for p in prompts))
    finally:
        await engine.close()
    assert [ids for ids, _ in together] == [r.token_ids for r in alone]
    assert [text for _, text in together] == [r.text for r in alone]
    assert engine.core.sched.prefix.stats.hits >= 2  # the system prompt was computed once
