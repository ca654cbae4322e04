"""Buttons that survive a restart: one DynamicItem whose custom_id carries the action and
the value it acts on (`sb_claim:T17`, `sb_helpful:discord:1:2:3`).

discord.py matches an incoming component's custom_id against the template and rebuilds the
item, so no view has to be re-registered per message after a restart; the client adds this
class once with `add_dynamic_items`. The click itself is routed by the client (see
`ButtonRouter`), which keeps this module free of bot logic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import discord

from bot.actions import Action
from bot.present import ANSWER_LABELS
from bot.tickets import BUTTON_LABELS as TICKET_LABELS

# Discord's limit on a component's custom_id.
CUSTOM_ID_LIMIT = 100

_STYLES = {"primary": discord.ButtonStyle.primary, "danger": discord.ButtonStyle.danger,
           "": discord.ButtonStyle.secondary}

# The value may be empty: an answer without a cited article still has feedback buttons.
_TEMPLATE = re.compile(r"(?P<action>sb_[a-z_]+):(?P<value>.*)")


def default_label(action: str) -> str:
    if action in ANSWER_LABELS:
        return ANSWER_LABELS[action]
    try:
        return TICKET_LABELS[Action(action)]
    except (ValueError, KeyError):  # an action id this version does not know
        return action


def custom_id(action: str, value: str) -> str:
    cid = f"{action}:{value}"
    if len(cid) > CUSTOM_ID_LIMIT:
        raise ValueError(f"custom_id longer than {CUSTOM_ID_LIMIT} characters: {cid!r}")
    return cid


class ButtonRouter(Protocol):
    """What the client offers the button: handle a click after it has been deferred."""

    async def on_button(self, interaction: discord.Interaction[Any], action: str,
                        value: str) -> None: ...


class ActionButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=_TEMPLATE):
    def __init__(self, action: str, value: str, label: str = "", style: str = "") -> None:
        label = label or default_label(action)
        super().__init__(discord.ui.Button(label=label, style=_STYLES.get(style, _STYLES[""]),
                                           custom_id=custom_id(action, value)))
        self.action = action
        self.value = value

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str],
                             /) -> ActionButton:
        label = item.label if isinstance(item, discord.ui.Button) else ""
        return cls(match["action"], match["value"], label=label or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        router: ButtonRouter = interaction.client
        await router.on_button(interaction, self.action, self.value)


def buttons_view(buttons: Sequence[tuple[str, str, str, str]]) -> discord.ui.View | None:
    """A persistent view (no timeout) of (action, value, label, style) buttons; None when
    there are none. Empty label or style: the shared defaults from bot/present.py."""
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for action, value, label, style in buttons:
        view.add_item(ActionButton(action, value, label, style))
    return view
