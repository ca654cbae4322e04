"""Turn BANKING77 into a knowledge base (one article per intent) and an eval JSONL file.

    .venv/bin/python scripts/banking77_to_kb.py --out /tmp/b77 [--shots 10] [--holdout 10]

Writes OUT/kb/<intent>.md (example questions from train.csv in the front matter) and
OUT/eval.jsonl (test.csv: {"text", "expected"}). --shots K keeps K random train questions per
intent; --holdout N removes N random intents from the KB and labels their test queries null
(the right action for them is a handoff), so out-of-scope recall can be measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "banking77"


def read_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"text", "category"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected columns text,category")
        return [(row["text"].strip(), row["category"].strip()) for row in reader
                if row["text"] and row["category"]]


def title_of(intent: str) -> str:
    words = intent.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def article_text(intent: str, questions: list[str]) -> str:
    meta = {"id": intent, "title": title_of(intent),
            "url": f"https://help.example.com/banking/{intent.replace('_', '-')}",
            "questions": questions, "tags": ["banking77"]}
    # BANKING77 has questions only: the body stands in for the team's real answer.
    body = (f"{title_of(intent)}.\n\nThis article answers customer questions about "
            f"{intent.replace('_', ' ')}.")
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n" \
        + body + "\n"


def convert(data: Path, out: Path, shots: int | None, holdout: int, seed: int) -> dict[str, int]:
    train = read_rows(data / "train.csv")
    test = read_rows(data / "test.csv")
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in train:
        by_intent[intent].append(text)
    intents = sorted(by_intent)
    if not 0 <= holdout < len(intents):
        raise ValueError(f"--holdout must be between 0 and {len(intents) - 1}")
    rng = random.Random(seed)
    held = set(rng.sample(intents, holdout)) if holdout else set()
    kb_dir = out / "kb"
    kb_dir.mkdir(parents=True, exist_ok=True)
    for stale in kb_dir.glob("*.md"):
        stale.unlink()
    questions_written = 0
    for intent in intents:
        if intent in held:
            continue
        questions = list(dict.fromkeys(by_intent[intent]))
        if shots is not None:
            questions = rng.sample(questions, min(shots, len(questions)))
        questions_written += len(questions)
        (kb_dir / f"{intent}.md").write_text(article_text(intent, questions), encoding="utf-8")
    with (out / "eval.jsonl").open("w", encoding="utf-8") as handle:
        for text, intent in test:
            expected = None if intent in held else intent
            handle.write(json.dumps({"text": text, "expected": expected}) + "\n")
    (out / "holdout.json").write_text(json.dumps(sorted(held)) + "\n", encoding="utf-8")
    return {"articles": len(intents) - len(held), "questions": questions_written,
            "eval_items": len(test), "held_out_intents": len(held),
            "null_items": sum(1 for _, i in test if i in held)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="directory with train.csv and test.csv")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--shots", type=int, help="train questions per intent (default: all)")
    parser.add_argument("--holdout", type=int, default=0, help="intents left out of the KB")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.shots is not None and args.shots < 1:
        parser.error("--shots must be >= 1")
    try:
        counts = convert(args.data, args.out, args.shots, args.holdout, args.seed)
    except (OSError, ValueError) as exc:
        print(f"banking77_to_kb: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
