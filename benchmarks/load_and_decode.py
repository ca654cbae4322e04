"""Load-to-ready time and batch-1 greedy decode speed: our engine vs transformers, one run.

    .venv/bin/python -m benchmarks.load_and_decode [--tokens 128] [--repeats 2] [--threads N]
                                                    [--model PATH] [--no-embeddings] [--json]

Figures, not a test: the CPU here is shared, so each side is measured `repeats` times,
interleaved, and the best run is kept.

* load-to-ready: from "here is the model path" to a model and tokenizer ready to generate.
  Ours: `load_generator(path)`. transformers: `AutoModelForCausalLM.from_pretrained(dir,
  gguf_file=...)` + `AutoTokenizer.from_pretrained(...)` (or the HF directory itself). Python
  imports are excluded on both sides.
* decode: one chat-formatted support question, greedy, `--tokens` new tokens (EOS ignored), tok/s
  = new tokens / wall time of the whole call (prefill included, on both sides). Ours:
  `Generator.generate`; transformers: `model.generate(do_sample=False)`.
  Both sides multiply by the same weights (the GGUF's blocks dequantised to fp32); on a CPU
  with AVX-512 ours reads them as the file's 4-bit blocks during decoding (``decode_weights``
  in the header line: ``ggml-blocks``; see engine/quant.py), transformers as fp32 tensors.
* embeddings: `benchmarks.embeddings.run_embedding_benchmark()` (the encoder's own benchmark).

Device and dtype come from `pick_placement()`, so this runs unchanged on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from engine.defaults import default_model_path
from engine.device import Placement, pick_placement
from engine.generator import Generator, load_generator
from engine.sampling import SamplingParams

QUESTION = "Hi! I was charged twice for my subscription this month. How do I get a refund?"


@dataclass
class Row:
    metric: str
    ours: float
    transformers: float
    unit: str
    higher_is_better: bool
    goal: str

    @property
    def ratio(self) -> float:
        """How many times better we are (>1 means we win)."""
        if self.higher_is_better:
            return self.ours / self.transformers
        return self.transformers / self.ours


def _sync(placement: Placement) -> None:
    if placement.device.type == "cuda":
        torch.cuda.synchronize(placement.device)


def _timed(fn: Callable[[], Any], placement: Placement) -> tuple[float, Any]:
    _sync(placement)
    start = time.perf_counter()
    result = fn()
    _sync(placement)
    return time.perf_counter() - start, result


def load_transformers(path: str, placement: Placement) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    kwargs: dict[str, Any] = {"gguf_file": p.name} if p.is_file() else {}
    where = str(p.parent) if p.is_file() else str(p)
    model: Any = AutoModelForCausalLM.from_pretrained(where, dtype=placement.dtype, **kwargs)
    model = model.to(placement.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    return model, tokenizer


def bench_load(path: str, placement: Placement, repeats: int) -> tuple[Row, Generator, Any]:
    ours_s = theirs_s = float("inf")
    gen: Generator | None = None
    hf_model: Any = None
    for _ in range(repeats):
        gen = hf_model = None  # free the previous copies before timing the next load
        t, gen = _timed(lambda: load_generator(path, placement), placement)
        ours_s = min(ours_s, t)
        t, (hf_model, _) = _timed(lambda: load_transformers(path, placement), placement)
        theirs_s = min(theirs_s, t)
    assert gen is not None
    row = Row("load-to-ready", ours_s, theirs_s, "s", False, ">= 5x faster, <= 5 s")
    return row, gen, hf_model


def bench_decode(gen: Generator, hf_model: Any, tokens: int, placement: Placement,
                 repeats: int) -> tuple[Row, int]:
    prompt = gen.chat_prompt([{"role": "user", "content": QUESTION}])
    params = SamplingParams(max_new_tokens=tokens, ignore_eos=True)
    ids = torch.tensor([prompt], device=placement.device)

    def ours() -> list[int]:
        return gen.generate([prompt], params)[0].token_ids

    def theirs() -> list[int]:
        with torch.inference_mode():
            out = hf_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                    max_new_tokens=tokens, min_new_tokens=tokens,
                                    do_sample=False, pad_token_id=0)
        return [int(t) for t in out[0, len(prompt):]]

    # Warm-up: first calls pay for allocator growth and lazy initialisation.
    gen.generate([prompt], SamplingParams(max_new_tokens=4, ignore_eos=True))
    with torch.inference_mode():
        hf_model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    ours_s = theirs_s = float("inf")
    ours_ids: list[int] = []
    theirs_ids: list[int] = []
    for _ in range(repeats):
        t, ours_ids = _timed(ours, placement)
        ours_s = min(ours_s, t)
        t, theirs_ids = _timed(theirs, placement)
        theirs_s = min(theirs_s, t)
    row = Row(f"greedy decode, batch 1, {tokens} tokens", tokens / ours_s, tokens / theirs_s,
              "tok/s", True, ">= 2x")
    agree = next((i for i, (a, b) in enumerate(zip(ours_ids, theirs_ids, strict=False)) if a != b),
                 min(len(ours_ids), len(theirs_ids)))
    return row, agree  # leading greedy tokens both sides agree on (fp32 near-ties can flip)


# --- embeddings row --------------------------------------------------------------------------
# Owned by the encoder engineer: embeddings/s for 1,000 short sentences, ours vs transformers.
def embeddings_rows() -> list[Row]:
    """The issue's row (transformers as usually run: fp32 on a CPU) and, when our encoder
    multiplies in bf16, the same against transformers under bf16 autocast."""
    try:
        from benchmarks.embeddings import run_embedding_benchmark
    except ImportError:
        return []
    r = run_embedding_benchmark(n=1000)
    rows = [Row(f"embeddings, 1,000 short sentences ({r['matmul_dtype']} matmuls)",
                r["ours_per_s"], r["transformers_per_s"], "emb/s", True, ">= 3x (issue #3)")]
    if r["transformers_bf16_per_s"]:
        rows.append(Row("  same, transformers in bf16 autocast", r["ours_per_s"],
                        r["transformers_bf16_per_s"], "emb/s", True, "same precision"))
    return rows
# ----------------------------------------------------------------------------------------------


def format_table(rows: list[Row]) -> str:
    header = f"{'metric':<46} {'ours':>10} {'transformers':>13} {'unit':>6} {'ratio':>8}   goal"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.metric:<46} {r.ours:>10.2f} {r.transformers:>13.2f} {r.unit:>6} "
                     f"{r.ratio:>7.1f}x   {r.goal}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="GGUF file or HF directory (default: the bundled model)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per decode run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side; best is kept")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-embeddings", action="store_true", help="skip the embeddings row")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers  # imported before timing: import cost is not load time

    placement = pick_placement()
    path = args.model or default_model_path()
    load_row, gen, hf_model = bench_load(path, placement, args.repeats)
    decode_row, agree = bench_decode(gen, hf_model, args.tokens, placement, args.repeats)
    rows = [load_row, decode_row]
    decode_weights = gen.model.decode_weights
    del gen, hf_model
    if not args.no_embeddings:
        rows.extend(embeddings_rows())
    info = {"model": path, "device": str(placement.device),
            "dtype": str(placement.dtype).removeprefix("torch."), "decode_weights": decode_weights,
            "threads": torch.get_num_threads(), "transformers": transformers.__version__,
            "torch": torch.__version__, "identical_leading_tokens": f"{agree}/{args.tokens}"}
    if args.json:
        print(json.dumps({**info, "rows": [asdict(r) | {"ratio": r.ratio} for r in rows]}))
        return
    print(", ".join(f"{k}={v}" for k, v in info.items()))
    print(format_table(rows))


if __name__ == "__main__":
    main()
