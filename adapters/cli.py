"""The `supportbot` command: the composition root that wires settings, store, engine and adapters.

Each area registers its own subcommands in a small module (`cli_*.py`) so this file stays a
table of contents. A subcommand module exposes ``register(subparsers)``; the parser it adds
sets ``func`` to a callable taking the parsed namespace and returning an exit code.
Subcommands call `load_settings()` directly: an invalid setting raises SettingsError, which
`main` prints (naming the setting) and turns into exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from bot.settings import SettingsError

# Modules that add subcommands, in help order. Each has `register(subparsers) -> None`.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "adapters.cli_chat",
    "adapters.cli_transcripts",
    "adapters.cli_stats",
    "adapters.cli_embed",
    "adapters.cli_engine",
    "adapters.cli_discord",
    "adapters.cli_slack",
    "adapters.cli_run",
    "adapters.cli_engine_serve",
    "adapters.cli_kb",
    "adapters.cli_eval",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supportbot",
        description="Customer-support bot for Slack and Discord with its own Transformer engine.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except SettingsError as exc:  # one place turns bad configuration into a clear exit 2
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
