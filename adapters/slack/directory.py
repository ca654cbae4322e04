"""Who a Slack user is: a display name (users.info) and user-group ids (usergroups.list),
the facts bot/authz.py decides on. Both cached briefly, so a busy channel costs one lookup
per user per `ttl_s` rather than one per message. A lookup that fails (missing scope, Slack
down) degrades to the bare user id / no groups, which can only ever grant less."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.authz import Caller

log = logging.getLogger(__name__)


class SlackDirectory:
    def __init__(self, client: AsyncWebClient, ttl_s: float = 300.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self._names: dict[str, tuple[float, str]] = {}
        self._groups: tuple[float, dict[str, frozenset[str]]] | None = None

    async def display_name(self, user_id: str) -> str:
        cached = self._names.get(user_id)
        if cached and self._monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        name = user_id
        try:
            response = await self.client.users_info(user=user_id)
            user: dict[str, Any] = response.get("user") or {}
            profile: dict[str, Any] = user.get("profile") or {}
            name = str(profile.get("display_name") or profile.get("real_name")
                       or user.get("real_name") or user.get("name") or user_id)
        except Exception as exc:  # never lose a message over a name
            log.warning("slack: users.info for %s failed: %s", user_id, _why(exc))
        self._names[user_id] = (self._monotonic(), name)
        return name

    async def groups_of(self, user_id: str) -> frozenset[str]:
        if self._groups is None or self._monotonic() - self._groups[0] >= self.ttl_s:
            members: dict[str, frozenset[str]] = {}
            try:
                response = await self.client.usergroups_list(include_users=True)
                for group in response.get("usergroups") or []:
                    members[str(group["id"])] = frozenset(group.get("users") or ())
            except Exception as exc:
                log.warning("slack: usergroups.list failed (%s): user-group roles are off",
                            _why(exc))
            self._groups = (self._monotonic(), members)
        return frozenset(g for g, users in self._groups[1].items() if user_id in users)

    async def caller(self, user_id: str, team_id: str) -> Caller:
        return Caller(platform="slack", user_id=user_id,
                      display_name=await self.display_name(user_id), workspace=team_id,
                      groups=await self.groups_of(user_id))


def _why(exc: Exception) -> str:
    if isinstance(exc, SlackApiError) and isinstance(exc.response.data, dict):
        return str(exc.response.data.get("error") or exc)
    return f"{type(exc).__name__}: {exc}"
