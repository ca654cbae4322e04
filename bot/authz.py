"""Who may do what: the adapter supplies facts about the caller, bot/ decides.

Slack: admins/agents by configured user ids and/or user-group ids (the adapter puts the
caller's user-group ids in `Caller.groups`). Discord: by a permission flag (the adapter puts
the caller's permission names, e.g. "administrator", "manage_guild", in
`Caller.permissions`) or a role (role ids in `Caller.groups`). An admin is also an agent.
Every command and every button goes through `Authorizer.check` before its body runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class Role(IntEnum):
    """Ordered: a higher role may do everything a lower one may."""

    ANYONE = 0  # customers included
    AGENT = 1
    ADMIN = 2


@dataclass(frozen=True)
class Caller:
    """The person behind a slash command or a button press, as the adapter knows them."""

    platform: str
    user_id: str
    display_name: str = ""
    workspace: str = ""  # Slack team id / Discord guild id
    groups: frozenset[str] = frozenset()  # Slack user-group ids, Discord role ids
    permissions: frozenset[str] = frozenset()  # Discord permission names (lower case)

    @property
    def name(self) -> str:
        return self.display_name or self.user_id


@dataclass(frozen=True)
class Decision:
    allowed: bool
    role: Role  # what the caller is
    message: str = ""  # why not, phrased for the caller


def _ids(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip() for v in values if v.strip())


@dataclass(frozen=True)
class AuthConfig:
    """Who is an admin or an agent. Entries may be bare ids ("U123") or platform-scoped
    ("slack:U123", "discord:4242") when one deployment serves both platforms."""

    admin_users: frozenset[str] = frozenset()
    agent_users: frozenset[str] = frozenset()
    admin_groups: frozenset[str] = frozenset()  # Slack user groups / Discord roles
    agent_groups: frozenset[str] = frozenset()
    admin_permissions: frozenset[str] = frozenset({"administrator"})  # Discord flags
    agent_permissions: frozenset[str] = frozenset()

    @classmethod
    def build(cls, *, admin_users: Iterable[str] = (), agent_users: Iterable[str] = (),
              admin_groups: Iterable[str] = (), agent_groups: Iterable[str] = (),
              admin_permissions: Iterable[str] = ("administrator",),
              agent_permissions: Iterable[str] = ()) -> AuthConfig:
        return cls(_ids(admin_users), _ids(agent_users), _ids(admin_groups),
                   _ids(agent_groups), frozenset(p.lower() for p in _ids(admin_permissions)),
                   frozenset(p.lower() for p in _ids(agent_permissions)))


def _matches(configured: frozenset[str], platform: str, values: Iterable[str]) -> bool:
    return any(v in configured or f"{platform}:{v}" in configured for v in values)


class Authorizer:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config

    def role_of(self, caller: Caller) -> Role:
        c = self.config
        perms = {p.lower() for p in caller.permissions}
        if (_matches(c.admin_users, caller.platform, [caller.user_id])
                or _matches(c.admin_groups, caller.platform, caller.groups)
                or perms & c.admin_permissions):
            return Role.ADMIN
        if (_matches(c.agent_users, caller.platform, [caller.user_id])
                or _matches(c.agent_groups, caller.platform, caller.groups)
                or perms & c.agent_permissions):
            return Role.AGENT
        return Role.ANYONE

    def check(self, caller: Caller, needed: Role) -> Decision:
        role = self.role_of(caller)
        if role >= needed:
            return Decision(True, role)
        what = "an admin" if needed is Role.ADMIN else "a support agent"
        return Decision(False, role, f"Sorry, only {what} can do that.")
