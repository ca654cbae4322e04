"""Engine service throughput: AsyncEngine vs transformers `generate`, same weights, one run.

    .venv/bin/python -m benchmarks.engine_throughput [--json] [--levels 1,4,16] [--no-hf]
                                                     [--threads N]

Workload (the bot's): SmolLM2 (or $SUPPORTBOT_MODEL), greedy, 64 new tokens per request,
each prompt = one shared ~250-token system prompt + a distinct ~30-token customer question,
chat-formatted. For each concurrency level the prefix cache is warmed with one request (not
timed), then that many requests are submitted at once. Reported: aggregate generated tok/s
(all tokens / wall time from first submit to last token), time to first token p50/p95.

Baseline: transformers' LlamaForCausalLM holding the very same weights (copied from our
model, so no second 40 s GGUF load), `generate` greedy with 64 new tokens (a) sequentially,
one request after another (a rate, measured over 2 requests: it does not depend on the
level), and (b) as one left-padded batch of the level's prompts. Ratios use the better of
the two. Each level runs ours then transformers back to back, and the 1-minute load average
is reported with it: on a shared CPU, figures mean little without the load they ran under
(with other jobs busy, ``--threads 1`` avoids OpenMP threads spinning against them). Device
and dtype come from `pick_placement()`, so this runs unchanged on CUDA.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

import torch

from engine.async_engine import AsyncEngine, EngineConfig, GenerationParams
from engine.generator import Generator, load_generator

NEW_TOKENS = 64
SYSTEM = (
    "You are the support assistant of Tallyhub, an invoicing app for small businesses. "
    "Answer the customer's question using only the articles below, in two or three short "
    "sentences, and name the article you used. If the articles do not answer it, say that a "
    "person from the team will follow up.\n\n"
    "Article reset-password: Open Settings, then Security, and choose Reset password. The "
    "link arrives by email within five minutes; check the spam folder if it does not.\n"
    "Article invoices: Every invoice is under Billing, one per month. Download it as PDF, or "
    "export all of them as CSV from Reports.\n"
    "Article refunds: Annual plans can be refunded within 30 days of purchase. Monthly plans "
    "are not refunded but can be cancelled at any time from Billing.\n"
    "Article teammates: Owners add teammates under Settings, Team, Invite. Each teammate "
    "needs their own email address and gets the Member role by default.\n"
    "Article two-factor: Codes are sent by SMS or an authenticator app. If SMS codes do not "
    "arrive, switch to the app under Settings, Security, Two-factor authentication.\n"
    "Article api: The API allows 100 requests per minute per workspace; higher limits are "
    "available on the Business plan. Keys are created under Settings, API."
)
QUESTIONS = [
    "Hi, I forgot my password and the reset email never arrived, what should I do now?",
    "Where can I download the invoice for last month, and can I get it as a PDF file?",
    "We bought the annual plan two weeks ago by mistake. Can we still get our money back?",
    "How do I add my accountant as a teammate to our workspace so she can see invoices?",
    "The SMS codes for two-factor login are not arriving on my phone since yesterday, help!",
    "Is there a rate limit on the API? Our sync script gets errors after a few minutes.",
    "Can I export all of our invoices from this year to a CSV file for the tax office?",
    "I want to cancel the monthly subscription at the end of this month. How does it work?",
    "My colleague says she never got the invitation email to join our Tallyhub team, why?",
    "How can I switch two-factor authentication from SMS to an authenticator app please?",
    "Where exactly do I create a new API key for our integration with the accounting tool?",
    "Hello, the password reset link says it expired. Can you send me a fresh one quickly?",
    "Do invoices get generated automatically every month or do I need to click something?",
    "What role does a new teammate get by default, and can I make them an owner later on?",
    "We need more than one hundred API requests per minute. Which plan allows a higher limit?",
    "Is a refund possible for the monthly plan if we only used it for three days this month?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prompts(gen: Generator, n: int) -> list[list[int]]:
    return [gen.chat_prompt([{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}])
            for i in range(n)]


# -- ours ------------------------------------------------------------------------------------------
async def run_level(engine: AsyncEngine, batch: list[list[int]],
                    warm: list[int]) -> dict[str, float]:
    params = GenerationParams(max_tokens=NEW_TOKENS, ignore_eos=True)
    async for _ in engine.submit(warm, GenerationParams(max_tokens=1)):
        pass  # the shared system prompt is now in the prefix cache

    async def one(prompt: list[int], start: float) -> tuple[float, int]:
        ttft, n = -1.0, 0
        async for chunk in engine.submit(prompt, params):
            if ttft < 0 and chunk.token_ids:
                ttft = time.perf_counter() - start
            n += len(chunk.token_ids)
        return ttft, n

    start = time.perf_counter()
    results = await asyncio.gather(*(one(p, start) for p in batch))
    wall = time.perf_counter() - start
    ttfts = [t for t, _ in results]
    return {"tok_per_s": sum(n for _, n in results) / wall, "wall_s": wall,
            "ttft_p50_s": statistics.median(ttfts), "ttft_p95_s": percentile(ttfts, 0.95)}


async def run_ours(engine: AsyncEngine, gen: Generator, level: int) -> dict[str, float]:
    warm = gen.chat_prompt([{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": "Hello"}])
    if level > 1:
        return await run_level(engine, prompts(gen, level), warm)
    # one at a time: four requests give a TTFT distribution
    rows = [await run_level(engine, prompts(gen, 4)[i:i + 1], warm) for i in range(4)]
    return {"tok_per_s": statistics.mean(r["tok_per_s"] for r in rows),
            "wall_s": sum(r["wall_s"] for r in rows),
            "ttft_p50_s": statistics.median(r["ttft_p50_s"] for r in rows),
            "ttft_p95_s": percentile([r["ttft_p50_s"] for r in rows], 0.95)}


async def measure(gen: Generator, levels: list[int], with_hf: bool) -> list[dict[str, Any]]:
    """Ours and transformers level by level, back to back, so both see the same machine load
    (on a shared CPU it drifts within minutes)."""
    engine = AsyncEngine(gen.model, gen.tokenizer, EngineConfig(max_len=512,
                                                                max_batch=max(levels)))
    hf = hf_model(gen) if with_hf else None
    pad = gen.tokenizer.eos_token_ids[0]
    sequential = 0.0
    rows = []
    try:
        for level in levels:
            row: dict[str, Any] = {"concurrency": level}
            row.update({k: round(v, 3) for k, v in (await run_ours(engine, gen, level)).items()})
            print(f"ours: {json.dumps(row)}", file=sys.stderr)  # kept if the baseline fails
            if hf is not None:
                if not sequential:  # a rate that does not depend on the level: measured once
                    hf_generate(hf, prompts(gen, 1), pad)  # warm-up (first-call allocations)
                    seq = [hf_generate(hf, [p], pad) for p in prompts(gen, 2)]
                    sequential = len(seq) / sum(1 / r for r in seq)  # tokens / total time
                batch = hf_generate(hf, prompts(gen, level), pad) if level > 1 else None
                best = max(sequential, batch or 0.0)
                row.update(hf_tok_per_s=round(best, 2),
                           hf_sequential_tok_per_s=round(sequential, 2),
                           hf_batch_tok_per_s=None if batch is None else round(batch, 2),
                           ratio=round(row["tok_per_s"] / best, 2))
            row["loadavg_1m"] = round(os.getloadavg()[0], 2)
            rows.append(row)
    finally:
        await engine.close()
    return rows


# -- transformers ------------------------------------------------------------------------------
def hf_model(gen: Generator) -> Any:
    import transformers

    cfg = gen.config
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings)
    model: Any = transformers.LlamaForCausalLM(hf_cfg)
    # our state dict uses HF parameter names; a tied model may list no lm_head
    missing, unexpected = model.load_state_dict(gen.model.state_dict(), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"weights do not match: missing {missing}, unexpected {unexpected}")
    if missing:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model.to(device=gen.model.device, dtype=gen.model.dtype).eval()


def hf_generate(model: Any, batch: list[list[int]], pad_id: int) -> float:
    """Left-padded batch through `generate`; returns generated tok/s."""
    width = max(map(len, batch))
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
    device = next(model.parameters()).device
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                             max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             do_sample=False, pad_token_id=pad_id)
    if device.type == "cuda":
        torch.cuda.synchronize()  # kernels still queued are part of the time
    wall = time.perf_counter() - start
    return float((out.shape[1] - width) * len(batch) / wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--levels", default="1,4,16", help="concurrency levels")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers baseline")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for both sides (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    levels = [int(x) for x in args.levels.split(",")]

    t0 = time.perf_counter()
    gen = load_generator()
    load_s = time.perf_counter() - t0
    prompt_len = len(prompts(gen, 1)[0])
    rows = asyncio.run(measure(gen, levels, not args.no_hf))
    report = {"model": gen.path, "device": str(gen.model.device), "dtype": str(gen.model.dtype),
              "decode_weights": gen.model.decode_weights,
              "prompt_tokens": prompt_len, "new_tokens": NEW_TOKENS,
              "load_s": round(load_s, 2), "torch_threads": torch.get_num_threads(),
              "levels": rows}
    if args.json:
        print(json.dumps(report))
        return
    print(f"model {gen.path} on {report['device']} ({report['dtype']}, decode on "
          f"{report['decode_weights']} weights), load {load_s:.1f}s, "
          f"prompt {prompt_len} tokens, {NEW_TOKENS} new tokens, greedy, "
          f"{report['torch_threads']} threads")
    header = f"{'conc':>4} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p95':>9}"
    if not args.no_hf:
        header += f" {'HF seq':>8} {'HF batch':>9} {'ratio':>6}"
    print(header)
    for r in rows:
        line = (f"{r['concurrency']:>4} {r['tok_per_s']:>8.1f} {r['ttft_p50_s']:>8.2f}s "
                f"{r['ttft_p95_s']:>8.2f}s")
        if not args.no_hf:
            batch_text = "-" if r["hf_batch_tok_per_s"] is None else \
                f"{r['hf_batch_tok_per_s']:.1f}"
            line += (f" {r['hf_sequential_tok_per_s']:>8.1f} {batch_text:>9} "
                     f"{r['ratio']:>5.1f}x")
        print(f"{line}  (load average {r['loadavg_1m']})")


if __name__ == "__main__":
    main()
