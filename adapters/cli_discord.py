"""`supportbot discord`: run the Discord adapter; `supportbot discord invite-url`: print the
link that adds the bot to a server with the permissions it needs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from adapters.serve import serve_forever, until_signalled
from bot.settings import load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("discord", help="run the Discord adapter (see deploy/discord-setup.md)")
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="discord_command", metavar="ACTION")
    inv = actions.add_parser("invite-url", help="print the OAuth2 URL that adds the bot")
    inv.add_argument("--application-id", default="",
                     help="application (client) id; default: settings, then the token")
    inv.set_defaults(func=print_invite_url)


def print_invite_url(args: argparse.Namespace) -> int:
    from adapters.discordbot.invite import application_id_from_token, invite_url

    settings = load_settings()
    app_id = (args.application_id or settings.discord_application_id
              or application_id_from_token(settings.discord_token))
    if not app_id.isdigit():
        print("discord invite-url: need the application id: --application-id, "
              "SUPPORTBOT_DISCORD_APPLICATION_ID or SUPPORTBOT_DISCORD_TOKEN", file=sys.stderr)
        return 2
    print(invite_url(app_id))
    return 0


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.discord_token:
        print("discord: set SUPPORTBOT_DISCORD_TOKEN (see deploy/discord-setup.md)",
              file=sys.stderr)
        return 2
    from adapters.discordbot.app import run_discord  # discord.py loads only when needed

    # SIGTERM / Ctrl-C: stop taking events, finish replies, close (adapters/lifecycle.py)
    return serve_forever(until_signalled(lambda stop: run_discord(settings, stop)))
