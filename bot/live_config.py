"""Live configuration: settings admins change with `/support config set` or `pause`, stored in
one Redis hash and seen by every process within `refresh_s`.

Start-up Settings give the defaults; a value in the hash overrides its default. Every value
is validated before it is stored, so a typo never reaches the other processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bot.admin_store import KeyValue
from bot.business_hours import BusinessHours
from bot.keys import Keys


def _float_in(lo: float, hi: float) -> Callable[[str], str]:
    def check(text: str) -> str:
        value = float(text)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}")
        return repr(value)
    return check


def _int_at_least(lo: int) -> Callable[[str], str]:
    def check(text: str) -> str:
        value = int(text)
        if value < lo:
            raise ValueError(f"must be a whole number >= {lo}")
        return str(value)
    return check


def _channels(text: str) -> str:
    return ",".join(c.strip() for c in text.replace(" ", ",").split(",") if c.strip())


def _hours(text: str) -> str:
    BusinessHours.parse(text)
    return text.strip()


# Channel ids belong to one platform, so a process serving several platforms needs each one's
# own agents' channel; `agent_channel` stays the fallback for a platform without one.
AGENT_CHANNEL_PLATFORMS = ("slack", "discord")


def agent_channel_key(platform: str) -> str:
    """The live-config key of one platform's agents' channel: `agent_channel.slack`."""
    return f"agent_channel.{platform}"


def no_agent_channel(platform: str) -> str:
    """What a desk raises when tickets of `platform` have no agents' channel to go to."""
    return (f"no agents' channel for {platform.title()}: set "
            f"SUPPORTBOT_{platform.upper()}_AGENT_CHANNEL (or SUPPORTBOT_AGENT_CHANNEL), or "
            f"`/support config set {agent_channel_key(platform)} <channel id>`")


# key -> (validator turning text into the stored form, description)
SETTABLE: dict[str, tuple[Callable[[str], str], str]] = {
    "answer_threshold": (_float_in(0.0, 1.0), "minimum confidence to answer (0-1)"),
    "support_channels": (_channels, "channel ids the bot answers in (comma-separated)"),
    "agent_channel": (str.strip, "channel id for ticket cards (platforms without their own)"),
    **{agent_channel_key(p): (str.strip, f"channel id for ticket cards from {p.title()} "
                                         f"(empty: agent_channel)")
       for p in AGENT_CHANNEL_PLATFORMS},
    "business_hours": (_hours, "e.g. 'mon-fri 09:00-17:00 Europe/Berlin'; empty = always"),
    "rate_limit": (_int_at_least(1), "messages per user per rate window"),
    "rate_window_s": (_float_in(1.0, 86400.0), "rate window in seconds"),
    "claim_timeout_min": (_float_in(0.1, 1440.0), "minutes before an unclaimed ticket "
                                                  "reminds agents"),
    "max_reminders": (_int_at_least(0), "reminders per unclaimed ticket"),
}
# Keys an admin may set to "" (cleared: no hours, no channels, or back to the fallback).
CLEARABLE = frozenset({"business_hours", "support_channels", "agent_channel",
                       *(agent_channel_key(p) for p in AGENT_CHANNEL_PLATFORMS)})
PAUSED = "paused_channels"  # shown by /support status; "*" pauses every channel
# Each paused channel is its own field ("paused:C123" = "1"), so two admins pausing or resuming
# different channels at once both win: one HSET or HDEL each, no read-modify-write.
PAUSED_FIELD = "paused:"


@dataclass(frozen=True)
class ConfigSnapshot:
    answer_threshold: float = 0.5
    support_channels: tuple[str, ...] = ()
    agent_channel: str = ""
    agent_channels: tuple[tuple[str, str], ...] = ()  # (platform, channel): its own one
    business_hours: str = ""
    rate_limit: int = 10
    rate_window_s: float = 60.0
    claim_timeout_min: float = 10.0
    max_reminders: int = 3
    paused_channels: frozenset[str] = field(default_factory=frozenset)

    @property
    def claim_timeout_s(self) -> float:
        return self.claim_timeout_min * 60.0

    def agent_channel_for(self, platform: str) -> str:
        """Where ticket cards of `platform`'s conversations go: that platform's own agents'
        channel, else the shared `agent_channel` ("" = none set; the desk says so)."""
        return dict(self.agent_channels).get(platform, "") or self.agent_channel

    def is_paused(self, channel: str) -> bool:
        return "*" in self.paused_channels or channel in self.paused_channels

    def as_text(self) -> dict[str, str]:
        return {
            "answer_threshold": f"{self.answer_threshold:g}",
            "support_channels": ",".join(self.support_channels),
            "agent_channel": self.agent_channel,
            **{agent_channel_key(p): dict(self.agent_channels).get(p, "")
               for p in AGENT_CHANNEL_PLATFORMS},
            "business_hours": self.business_hours,
            "rate_limit": str(self.rate_limit),
            "rate_window_s": f"{self.rate_window_s:g}",
            "claim_timeout_min": f"{self.claim_timeout_min:g}",
            "max_reminders": str(self.max_reminders),
            PAUSED: ",".join(sorted(self.paused_channels)),
        }


def _split(text: str) -> list[str]:
    return [c for c in text.split(",") if c]


def merge(defaults: ConfigSnapshot, stored: Mapping[str, str]) -> ConfigSnapshot:
    """Defaults overridden by stored values; a stored value that no longer parses (written
    by an older version) is ignored rather than breaking every process."""
    values = defaults.as_text()
    for name, raw in stored.items():
        if name in SETTABLE:
            try:
                values[name] = SETTABLE[name][0](raw)
            except ValueError:
                continue
    paused = set(_split(values[PAUSED]))  # the defaults' (none, unless a test sets some)
    paused.update(name.removeprefix(PAUSED_FIELD) for name in stored
                  if name.startswith(PAUSED_FIELD))
    return ConfigSnapshot(
        answer_threshold=float(values["answer_threshold"]),
        support_channels=tuple(_split(values["support_channels"])),
        agent_channel=values["agent_channel"],
        agent_channels=tuple((p, values[agent_channel_key(p)]) for p in AGENT_CHANNEL_PLATFORMS
                             if values[agent_channel_key(p)]),
        business_hours=values["business_hours"],
        rate_limit=int(values["rate_limit"]),
        rate_window_s=float(values["rate_window_s"]),
        claim_timeout_min=float(values["claim_timeout_min"]),
        max_reminders=int(values["max_reminders"]),
        paused_channels=frozenset(paused),
    )


class ConfigError(ValueError):
    """A config key or value that cannot be set; the message says what would be valid."""


class LiveConfig:
    def __init__(self, kv: KeyValue, keys: Keys, defaults: ConfigSnapshot | None = None,
                 refresh_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        self.kv = kv
        self.keys = keys
        self.defaults = defaults or ConfigSnapshot()
        self.refresh_s = refresh_s
        self._monotonic = monotonic
        self._cached: ConfigSnapshot | None = None
        self._loaded_at = float("-inf")

    async def snapshot(self) -> ConfigSnapshot:
        """Current values, re-read from the store at most every refresh_s."""
        if self._cached is None or self._monotonic() - self._loaded_at >= self.refresh_s:
            self._cached = merge(self.defaults, await self.kv.hgetall(self.keys.config()))
            self._loaded_at = self._monotonic()
        return self._cached

    async def fresh(self) -> ConfigSnapshot:
        self._cached = None
        return await self.snapshot()

    async def set(self, name: str, text: str) -> str:
        """Validate and store one value; returns the stored form. Raises ConfigError."""
        if name not in SETTABLE:
            raise ConfigError(f"unknown config key {name!r}; keys: {', '.join(SETTABLE)}")
        try:
            value = SETTABLE[name][0](text)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        await self.kv.hset(self.keys.config(), {name: value})
        self._cached = None
        return value

    async def set_paused(self, channel: str, paused: bool) -> frozenset[str]:
        """Pause or resume one channel ("*" = all); returns the channels paused afterwards.
        One atomic write per channel, so concurrent admins never undo each other's change
        (resuming "*" clears every channel paused before it)."""
        name = self.keys.config()
        if paused:
            await self.kv.hset(name, {PAUSED_FIELD + channel: "1"})
        elif channel == "*":
            stored = await self.kv.hgetall(name)
            fields = [f for f in stored if f.startswith(PAUSED_FIELD)]
            if fields:
                await self.kv.hdel(name, *fields)
        else:
            await self.kv.hdel(name, PAUSED_FIELD + channel)
        return (await self.fresh()).paused_channels
