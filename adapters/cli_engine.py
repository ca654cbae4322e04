"""Engine subcommands: ``supportbot generate`` (and room for more engine tools).

    supportbot generate --prompt "How do I reset my password?" --max-tokens 64
    supportbot generate --prompt "hi" --system "You are terse." --json
    {"text": "...", "token_ids": [...], "logprobs": [...], "finish_reason": "stop"}

To add a subcommand, write ``_register_<name>(sub)`` + ``_run_<name>(args) -> int`` and call the
register function from :func:`register`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    _register_generate(sub)


def _register_generate(sub: Any) -> None:
    p = sub.add_parser("generate", help="generate a chat reply with the engine's own LLM")
    p.add_argument("--prompt", required=True, help="the user message")
    p.add_argument("--system", help="a system message to put first")
    p.add_argument("--max-tokens", type=int, default=256, help="most tokens to generate")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    p.add_argument("--seed", type=int, help="seed for sampling when --temperature > 0")
    p.add_argument("--model", help="GGUF file or HF directory "
                   "(default: $SUPPORTBOT_MODEL, else the packaged SmolLM2)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with text, token_ids and logprobs")
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    # Imported here so `supportbot --help` and unrelated subcommands do not pay for torch.
    from engine.errors import EngineError
    from engine.generator import load_generator
    from engine.sampling import SamplingParams

    if args.max_tokens < 1:
        print("generate: --max-tokens must be >= 1", file=sys.stderr)
        return 2
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.prompt})
    try:
        gen = load_generator(args.model)
        params = SamplingParams(max_new_tokens=args.max_tokens, temperature=args.temperature,
                                seed=args.seed)
        [result] = gen.generate([gen.chat_prompt(messages)], params)
    except (EngineError, ValueError) as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"text": result.text, "token_ids": result.token_ids,
                          "logprobs": result.logprobs, "finish_reason": result.finish_reason},
                         ensure_ascii=False))
    else:
        print(result.text)
    return 0
