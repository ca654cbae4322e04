"""Embedding throughput: our BERT encoder vs transformers, same model, same batch size, one run.

    .venv/bin/python -m benchmarks.embeddings [--n 1000] [--batch-size 32] [--repeats 3]

The baseline is the usual transformers recipe: texts in the order given, each batch padded to
its longest text, `AutoModel` forward, mean pooling, L2 normalise, under inference_mode. Both
sides run on `pick_placement()` (fp32 CPU, bf16/fp16 CUDA) and return CPU float32 vectors, so
the timings include tokenisation and the device round trip. On a CPU with native bf16, ours
multiplies in bf16 (engine/bert_packed.py); the table then adds transformers under
`torch.autocast(bfloat16)` as well, so the share of the speed-up that is precision shows.
Best of `repeats` runs each, interleaved, because the CPU is shared and noisy.
`run_embedding_benchmark()` returns the figures as a dict so benchmarks/load_and_decode.py can
add embeddings rows.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from engine.embedder import Embedder, load_embedder

_OPENERS = ["", "Hi, ", "Hello team, ", "Quick question: ", "Urgent: ", "Sorry to bother you, "]
_ASKS = [
    "how do I reset my password",
    "why was my card charged twice",
    "can I change the email on my account",
    "where can I download last month's invoice",
    "the mobile app crashes when I open settings",
    "how do I add a teammate to the workspace",
    "is there an API rate limit",
    "my order still shows as pending",
    "can I get a refund for the annual plan",
    "two-factor codes are not arriving by SMS",
    "how do I export all my data to CSV",
    "the Slack integration stopped posting messages",
    "what is the difference between Pro and Business",
    "I cannot log in with Google SSO",
    "how do I cancel my subscription",
    "the dashboard is very slow to load",
]
_TAILS = [
    "",
    "?",
    " please.",
    " since yesterday afternoon.",
    " after the latest update on my Android phone.",
    " - I already tried clearing the cache and logging out and back in again.",
    " because our finance department needs it before the end of the quarter.",
    " and the error message just says something went wrong, try again later.",
]


def make_sentences(n: int = 1000, seed: int = 0) -> list[str]:
    """`n` distinct short support-style sentences of varied length (about 4 to 40 tokens)."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    while len(seen) < n:
        text = rng.choice(_OPENERS) + rng.choice(_ASKS) + rng.choice(_TAILS)
        seen.setdefault(f"{text} (#{rng.randrange(10_000)})" if text in seen else text)
    return list(seen)


def _transformers_embedder(model_dir: str, device: torch.device, dtype: torch.dtype,
                           max_length: int, autocast_bf16: bool = False
                           ) -> Callable[[list[str], int], torch.Tensor]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local directory only, never the hub
    from transformers import AutoModel, AutoTokenizer  # test/benchmark-only dependency

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).to(device=device, dtype=dtype).eval()

    def embed(texts: list[str], batch_size: int) -> torch.Tensor:
        out = []
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16,
                                                    enabled=autocast_bf16):
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(texts[start : start + batch_size], padding=True,
                                  truncation=True, max_length=max_length, return_tensors="pt")
                batch = {k: v.to(device) for k, v in batch.items()}
                hidden = model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(F.normalize(pooled, dim=-1).cpu())
        return torch.cat(out)

    return embed


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    """Positions computed when `lengths` are batched in the given order, each batch padded to
    its longest: the work (FLOPs scale with it) a padded-batch encoder does."""
    return sum(len(chunk) * max(chunk) for chunk in
               (lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)))


def _best_time(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    best, result = float("inf"), torch.empty(0)
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()  # both sides end with .cpu(), which waits for the device
        best = min(best, time.perf_counter() - start)
    return best, result


def run_embedding_benchmark(n: int = 1000, batch_size: int = 32, repeats: int = 3,
                            embedder: Embedder | None = None) -> dict[str, Any]:
    """Embeddings/second for `n` short sentences, ours vs transformers, plus their ratio and
    the worst cosine between the two sides' vectors (a correctness check on the same run)."""
    emb = embedder or load_embedder()
    model_dir = str(emb.model_dir)
    theirs = _transformers_embedder(model_dir, emb.device, emb.placement.dtype, emb.max_length)
    matmuls = emb.matmul_dtype
    theirs_bf16 = (_transformers_embedder(model_dir, emb.device, emb.placement.dtype,
                                          emb.max_length, autocast_bf16=True)
                   if emb.serves_packed and matmuls == torch.bfloat16 else None)
    texts = make_sentences(n)
    lengths = [len(ids) for ids in emb.token_ids(texts)]

    # Warm-up, not timed: one whole pass per side (allocator, kernels, tokenizer caches, and a
    # CPU that has been idle: the first seconds of load ran up to 10 % slower here).
    emb.embed(texts, batch_size=batch_size)
    theirs(texts, batch_size)
    if theirs_bf16 is not None:
        theirs_bf16(texts, batch_size)

    ours_s = theirs_s = bf16_s = float("inf")
    ours_vecs = theirs_vecs = torch.empty(0)
    for _ in range(repeats):  # interleave so a noisy neighbour hurts both sides alike
        t, ours_vecs = _best_time(lambda: emb.embed(texts, batch_size=batch_size), 1)
        ours_s = min(ours_s, t)
        t, theirs_vecs = _best_time(lambda: theirs(texts, batch_size), 1)
        theirs_s = min(theirs_s, t)
        if theirs_bf16 is not None:
            t, _ = _best_time(lambda: theirs_bf16(texts, batch_size), 1)
            bf16_s = min(bf16_s, t)

    return {
        "model": emb.name,
        "device": str(emb.device),
        "dtype": str(emb.placement.dtype).removeprefix("torch."),
        "matmul_dtype": str(matmuls).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "sentences": n,
        "batch_size": batch_size,
        "mean_tokens": sum(lengths) / len(lengths),
        "max_tokens": max(lengths),
        # Work each side does: the ratio of these bounds the speed-up on compute-bound hardware.
        # Packed (CPU): no padding at all; otherwise length-sorted padded batches.
        "ours_padded_tokens": (sum(lengths) if emb.serves_packed
                               else padded_tokens(sorted(lengths, reverse=True), batch_size)),
        "transformers_padded_tokens": padded_tokens(lengths, batch_size),
        "ours_per_s": n / ours_s,
        "transformers_per_s": n / theirs_s,
        "speedup": theirs_s / ours_s,
        # transformers under bf16 autocast: same matmul precision as ours (CPU, native bf16)
        "transformers_bf16_per_s": n / bf16_s if theirs_bf16 is not None else None,
        "min_cosine": float((ours_vecs * theirs_vecs).sum(-1).min()),
    }


def format_table(r: dict[str, Any]) -> str:
    head = (f"embeddings: {r['sentences']} sentences ({r['mean_tokens']:.1f} tokens mean, "
            f"{r['max_tokens']} max), batch {r['batch_size']}, {r['model']} on {r['device']} "
            f"{r['dtype']} (matmuls {r['matmul_dtype']}), {r['threads']} threads")
    rows = [
        f"{'engine':<14} {'emb/s':>10} {'vs transformers':>16} {'positions computed':>19}",
        f"{'supportbot':<14} {r['ours_per_s']:>10.1f} {r['speedup']:>15.2f}x "
        f"{r['ours_padded_tokens']:>19}",
        f"{'transformers':<14} {r['transformers_per_s']:>10.1f} {1.0:>15.2f}x "
        f"{r['transformers_padded_tokens']:>19}",
        f"min cosine(ours, transformers) = {r['min_cosine']:.6f}",
    ]
    if r["transformers_bf16_per_s"]:
        rows.insert(3, f"{'transformers':<14} {r['transformers_bf16_per_s']:>10.1f} "
                       f"{r['transformers_bf16_per_s'] / r['transformers_per_s']:>15.2f}x "
                       f"{r['transformers_padded_tokens']:>19}  (bf16 autocast)")
    return "\n".join([head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(format_table(run_embedding_benchmark(args.n, args.batch_size, args.repeats)))


if __name__ == "__main__":
    main()
