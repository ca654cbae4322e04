"""Business hours: "mon-fri 09:00-17:00 Europe/Berlin", so customers outside them are told
when a person will be back. Empty means always open."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(r"^\s*(?P<d1>[a-z]{3})(?:\s*-\s*(?P<d2>[a-z]{3}))?\s+"
                   r"(?P<h1>\d{1,2}):(?P<m1>\d{2})\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})"
                   r"(?:\s+(?P<tz>\S+))?\s*$", re.IGNORECASE)

FORMAT_HELP = "business hours look like 'mon-fri 09:00-17:00 Europe/Berlin' (empty = always)"


@dataclass(frozen=True)
class BusinessHours:
    days: frozenset[int] = frozenset(range(7))
    start_min: int = 0
    end_min: int = 24 * 60
    tz: str = "UTC"
    always: bool = True

    @classmethod
    def parse(cls, text: str) -> BusinessHours:
        """Raises ValueError with the expected format on anything it cannot read."""
        if not text.strip():
            return cls()
        m = _SPEC.match(text)
        if m is None:
            raise ValueError(f"cannot read {text!r}: {FORMAT_HELP}")
        d1, d2 = m["d1"].lower(), (m["d2"] or m["d1"]).lower()
        if d1 not in DAYS or d2 not in DAYS:
            raise ValueError(f"unknown day in {text!r}: use {', '.join(DAYS)}")
        i, j = DAYS.index(d1), DAYS.index(d2)
        days = frozenset((i + k) % 7 for k in range((j - i) % 7 + 1))
        start = int(m["h1"]) * 60 + int(m["m1"])
        end = int(m["h2"]) * 60 + int(m["m2"])
        if not (0 <= start < end <= 24 * 60) or int(m["m1"]) > 59 or int(m["m2"]) > 59:
            raise ValueError(f"bad time range in {text!r}: {FORMAT_HELP}")
        tz = m["tz"] or "UTC"
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}") from None
        return cls(days, start, end, tz, always=False)

    def _local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, ZoneInfo(self.tz))

    def is_open(self, ts: float) -> bool:
        if self.always:
            return True
        t = self._local(ts)
        minute = t.hour * 60 + t.minute
        return t.weekday() in self.days and self.start_min <= minute < self.end_min

    def next_open(self, ts: float) -> datetime:
        """The next opening time at or after ts (local time of the configured zone)."""
        t = self._local(ts)
        for offset in range(8):
            day = (t + timedelta(days=offset)).replace(hour=0, minute=0, second=0,
                                                       microsecond=0)
            opening = day + timedelta(minutes=self.start_min)
            if day.weekday() in self.days and opening >= t - timedelta(minutes=1):
                return opening
        return t  # unreachable with a non-empty day set

    def describe_next(self, ts: float) -> str:
        """'on Monday at 09:00 (Europe/Berlin)' for customer notices."""
        when = self.next_open(ts)
        day = "today" if when.date() == self._local(ts).date() else f"on {when:%A}"
        return f"{day} at {when:%H:%M} ({self.tz})"
