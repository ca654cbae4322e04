"""The `/support` app-command group, generated from bot/admin.py's command table.

bot/ parses admin commands from text (`AdminCommands.handle(caller, text, channel)`, shared
with Slack's `/support`), so each Discord subcommand carries one optional free-text `args`
option and the adapter hands `"<command> <args>"` over unchanged: `/support claim args:T17`
becomes "claim T17", `/support kb search args:reset` becomes "kb search reset". Who may run
what is decided by bot/authz.py on every call; the group's default member permission
(Manage Server) only hides it in Discord's menu and is not relied on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import discord
from discord import app_commands

from bot.admin import COMMANDS

RunAdmin = Callable[[discord.Interaction[Any], str], Awaitable[None]]

DESCRIPTION_LIMIT = 100  # Discord's limit for command and option descriptions


def _command(name: str, full: str, description: str,
             run: RunAdmin) -> app_commands.Command[Any, ..., None]:
    @app_commands.describe(args="the rest of the command, as you would type it")
    async def callback(interaction: discord.Interaction[Any], args: str = "") -> None:
        await run(interaction, f"{full} {args}".strip())

    return app_commands.Command(name=name, description=description[:DESCRIPTION_LIMIT],
                                callback=callback)


def support_group(run: RunAdmin,
                  commands: Iterable[tuple[str, str]] | None = None) -> app_commands.Group:
    """`/support <command> [args]`, with `kb` and `config` as subcommand groups.

    commands: (name, summary) pairs; default: every command bot/admin.py knows."""
    if commands is None:
        commands = [(c.name, f"{c.summary} ({c.usage})") for c in COMMANDS.values()]
    group = app_commands.Group(
        name="support", description="Steer the support bot",
        default_permissions=discord.Permissions(manage_guild=True), guild_only=True)
    subgroups: dict[str, app_commands.Group] = {}
    for full, description in commands:
        words = full.split()
        if len(words) == 1:
            group.add_command(_command(full, full, description, run))
            continue
        head, name = words[0], words[1]
        if head not in subgroups:
            subgroups[head] = app_commands.Group(name=head, description=f"/support {head} ...",
                                                 parent=group)
        subgroups[head].add_command(_command(name, full, description, run))
    return group
