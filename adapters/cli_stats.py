"""`supportbot stats [--days N] [--png FILE]`: the support figures as a table, and charts."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bot.admin_store import RedisKeyValue
from bot.analytics import Analytics, StatsReport, report_lines
from bot.keys import Keys
from bot.settings import Settings, load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("stats", help="support analytics: table and charts")
    p.add_argument("--days", type=int, default=7, help="days to cover, up to today (default 7)")
    p.add_argument("--png", type=Path, help="also draw charts into this PNG file")
    p.set_defaults(func=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    if not 1 <= args.days <= 366:
        print("stats: --days must be between 1 and 366", file=sys.stderr)
        return 2
    if args.png is not None and not args.png.parent.is_dir():
        print(f"stats: no such directory: {args.png.parent}", file=sys.stderr)
        return 2
    settings = load_settings()
    if not settings.redis_url:
        print("stats: SUPPORTBOT_REDIS_URL is not set; figures live in Redis", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_report(settings, args.days))
    except aioredis.RedisError as exc:
        print(f"stats: cannot read Redis at {settings.redis_url}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report_lines(report)))
    if args.png is not None:
        draw(report, args.png)
        print(f"charts written to {args.png}")
    return 0


async def _report(settings: Settings, days: int) -> StatsReport:
    client = aioredis.from_url(settings.redis_url, decode_responses=True)
    try:
        analytics = Analytics(RedisKeyValue(client), Keys(settings.redis_prefix))
        return await analytics.report(days, time.time())
    finally:
        await client.aclose()


def draw(report: StatsReport, path: Path) -> None:
    """Conversations and escalations per day, and escalations by reason."""
    import matplotlib  # local: only this command needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (per_day, reasons) = plt.subplots(1, 2, figsize=(11, 4))
    days = [d[4:6] + "-" + d[6:] for d, _, _ in report.per_day]
    per_day.bar(days, [c for _, c, _ in report.per_day], label="conversations")
    per_day.bar(days, [e for _, _, e in report.per_day], label="escalated")
    per_day.set_title("Conversations per day (UTC)")
    per_day.legend()
    per_day.tick_params(axis="x", labelrotation=45)
    names = list(report.by_reason) or ["(none)"]
    reasons.barh(names, [report.by_reason.get(n, 0) for n in names])
    reasons.set_title("Escalations by reason")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
