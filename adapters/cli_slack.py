"""`supportbot slack`: run the Slack adapter (Socket Mode by default, or HTTP Events API)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from adapters.serve import serve_forever, until_signalled
from bot.settings import load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("slack", help="run the Slack adapter (README: Slack setup)")
    p.add_argument("--http", action="store_true",
                   help="serve the HTTP Events API instead of Socket Mode")
    p.add_argument("--port", type=int, help="HTTP mode port (default: settings, 3000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.http:
        overrides["slack_mode"] = "http"
    if args.port is not None:
        overrides["slack_http_port"] = args.port
    settings = load_settings(**overrides)
    from adapters.slack.process import run_slack, settings_problems  # slack libs on demand

    problems = settings_problems(settings)
    if problems:
        print("slack: missing settings:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    # SIGTERM / Ctrl-C: stop taking events, finish replies, close (adapters/lifecycle.py)
    return serve_forever(until_signalled(lambda stop: run_slack(settings, stop)))
