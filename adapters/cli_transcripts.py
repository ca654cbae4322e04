"""`supportbot transcripts export --out FILE.jsonl`: human-resolved conversations as
chat-formatted training examples, personal data masked (bot/transcripts.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bot.keys import Keys
from bot.settings import Settings, load_settings
from bot.tickets_redis import RedisTicketStore
from bot.transcripts import export_jsonl


def register(sub: Any) -> None:
    p = sub.add_parser("transcripts", help="kept transcripts of human-resolved tickets")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="write them as JSONL training examples")
    export.add_argument("--out", type=Path, required=True, help="output file (.jsonl)")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not args.out.parent.is_dir():
        print(f"transcripts: no such directory: {args.out.parent}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        print("transcripts: SUPPORTBOT_REDIS_URL is not set; the in-memory store keeps no "
              "transcripts between runs", file=sys.stderr)
        return 2
    return asyncio.run(_export(settings, args.out))


async def _export(settings: Settings, out: Path) -> int:
    client = aioredis.from_url(settings.redis_url, decode_responses=True)
    try:
        kept = await RedisTicketStore(client, Keys(settings.redis_prefix)).transcripts()
    except aioredis.RedisError as exc:
        print(f"transcripts: cannot read Redis at {settings.redis_url}: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    written = export_jsonl(kept, out)
    print(f"wrote {written} training examples from {len(kept)} transcripts to {out}")
    return 0
