"""The OAuth2 URL that adds the bot to a server with exactly the permissions it uses."""

from __future__ import annotations

import base64
import binascii

import discord

# Each one is used; nothing more is asked for.
REQUIRED_PERMISSIONS = discord.Permissions(
    view_channel=True,  # see the support channels, forums and the agents' channel
    send_messages=True,  # answers in DMs and channels, ticket cards
    send_messages_in_threads=True,  # answers inside threads and forum posts
    create_public_threads=True,  # a thread for each new question
    embed_links=True,  # citations and ticket cards are embeds
    read_message_history=True,  # reply to a card (reminders), fetch thread starters
)
SCOPES = ("bot", "applications.commands")  # the bot user, and the /support app commands


def application_id_from_token(token: str) -> str:
    """A bot token's first part is its application's user id, base64-encoded."""
    head = token.split(".", 1)[0]
    try:
        decoded = base64.b64decode(head + "=" * (-len(head) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded if decoded.isdigit() else ""


def invite_url(application_id: str) -> str:
    return discord.utils.oauth_url(application_id, permissions=REQUIRED_PERMISSIONS,
                                   scopes=SCOPES)
