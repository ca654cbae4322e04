"""`supportbot eval --kb DIR --data FILE.jsonl [--threshold T | --sweep] [--json]`.

The decision per item is the bot's own (policy pre-checks, hybrid retrieval, threshold); no
generation. `--sweep` tries every threshold, writes a PNG of wrong-answer rate against
coverage and prints the lowest threshold whose wrong-answer rate is within --max-wrong-rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from adapters.cli_kb import (
    DEFAULT_INDEX_DIR,
    encoder_path,
    load_encoder,
    load_kb_reporting,
    refresh_index,
)
from bot.eval import (
    Metrics,
    best_threshold,
    load_eval_file,
    metrics_at,
    plot_sweep,
    predict,
    sweep,
)
from bot.retrieval import HybridRetriever
from bot.settings import SettingsError, load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="measure answer-or-escalate on a labelled JSONL file")
    p.add_argument("--kb", type=Path, help="knowledge-base directory (default: settings)")
    p.add_argument("--data", type=Path, required=True,
                   help='JSONL: {"text": ..., "expected": article id or null} per line')
    p.add_argument("--encoder", type=Path, help="encoder directory (default: settings)")
    p.add_argument("--index-dir", type=Path, default=DEFAULT_INDEX_DIR)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--threshold", type=float, help="confidence threshold (default: "
                                                      "SUPPORTBOT_ANSWER_THRESHOLD)")
    mode.add_argument("--sweep", action="store_true", help="try every threshold")
    p.add_argument("--max-wrong-rate", type=float, default=0.02,
                   help="--sweep: wrong-answer rate the chosen threshold must meet")
    p.add_argument("--plot", type=Path, default=Path("eval-sweep.png"),
                   help="--sweep: where to write the PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_eval)


def _fmt(m: Metrics) -> str:
    oos = "n/a" if m.oos_recall is None else f"{m.oos_recall:.2%}"
    return (f"threshold {m.threshold:.3f}: in-scope accuracy {m.in_scope_accuracy:.2%} "
            f"(top-1 {m.top1_accuracy:.2%}), OOS recall {oos}, wrong answers "
            f"{m.wrong_answer_rate:.2%}, coverage {m.coverage:.2%}")


def run_eval(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(**({"kb_dir": args.kb} if args.kb else {}))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        print("eval: --threshold must be between 0 and 1", file=sys.stderr)
        return 2
    if not args.data.is_file():
        print(f"eval: data file not found: {args.data}", file=sys.stderr)
        return 2
    items, problems = load_eval_file(args.data)
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    try:
        kb = load_kb_reporting(settings.kb_dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 2
    if not items or not kb.articles:
        print("eval: nothing to evaluate (no items or no articles)", file=sys.stderr)
        return 2
    known = {a.id for a in kb.articles}
    unknown = sorted({i.expected for i in items if i.expected and i.expected not in known})
    if unknown:
        print(f"eval: warning: {len(unknown)} expected id(s) are not in the KB, e.g. "
              f"{unknown[0]!r} (they count as wrong)", file=sys.stderr)

    t0 = time.perf_counter()
    embedder = load_encoder(encoder_path(settings, args.encoder))
    update = asyncio.run(refresh_index(settings, kb, settings.kb_dir, embedder, args.index_dir,
                                       quiet=args.json))
    retriever = HybridRetriever(kb, update.index, embedder)
    t1 = time.perf_counter()
    vectors = retriever.embed([i.text for i in items])
    t2 = time.perf_counter()
    hits = retriever.search_vectors([i.text for i in items], vectors, k=1)
    preds = predict(items, hits)
    t3 = time.perf_counter()
    timings = {"setup_s": round(t1 - t0, 2), "embed_s": round(t2 - t1, 2),
               "score_s": round(t3 - t2, 2), "eval_s": round(t3 - t1, 2)}

    result: dict[str, Any]
    if args.sweep:
        points = sweep(items, preds)
        chosen = best_threshold(points, args.max_wrong_rate)
        plot = plot_sweep(points, chosen, args.plot, args.max_wrong_rate)
        m = chosen or metrics_at(items, preds, 1.0)
        result = m.as_dict() | {"max_wrong_rate": args.max_wrong_rate,
                                 "threshold_found": chosen is not None, "plot": str(plot)}
    else:
        threshold = settings.answer_threshold if args.threshold is None else args.threshold
        m = metrics_at(items, preds, threshold)
        result = m.as_dict()
    result |= timings | {"encoder": embedder.name, "calibration_examples":
                         retriever.calibration.fitted_on, "skipped_lines": len(problems)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(_fmt(m))
    if args.sweep:
        if result["threshold_found"]:
            print(f"threshold meeting wrong-answer rate <= {args.max_wrong_rate:.2%}: "
                  f"{m.threshold:.3f}")
        else:
            print(f"no threshold keeps the wrong-answer rate <= {args.max_wrong_rate:.2%}")
        print(f"plot: {result['plot']}")
    print(f"{len(items)} items: embedded in {timings['embed_s']} s, scored in "
          f"{timings['score_s']} s (setup {timings['setup_s']} s)")
    return 0
