"""Redis TicketStore: tickets shared by every adapter process.

A ticket is a hash: `data` holds the JSON written at creation (conversation, summary,
transcript...) and the fields that change (state, agent, reminders, ...) sit beside it, so
the Lua scripts that arbitrate claims, closes and reminders only touch plain fields.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import redis.asyncio as aioredis

from bot.keys import Keys
from bot.tickets import ACTIVE_STATES, ClaimResult, StoredTranscript, Ticket, TicketState

# KEYS[1] ticket hash; ARGV agent, agent_name, now. -1 unknown, 1 won, 0 lost.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'claimed' and redis.call('HGET', KEYS[1], 'agent') == ARGV[1] then return 1 end
if state ~= 'open' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'claimed', 'agent', ARGV[1], 'agent_name', ARGV[2],
           'claimed_at', ARGV[3])
return 1
"""

# KEYS[1] ticket hash, KEYS[2] active zset; ARGV id, to, now, by, note, ttl_s, allowed...
_CLOSE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
local ok = false
for i = 7, #ARGV do if ARGV[i] == state then ok = true end end
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'closed_at', ARGV[3], 'closed_by', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'note', ARGV[5]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""

# KEYS[1] ticket hash; ARGV seen_reminders
_REMIND = """
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'reminders') or '0') ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'reminders', 1)
return 1
"""

# KEYS[1] lease key; ARGV owner, ttl_ms
_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

MUTABLE = ("state", "agent", "agent_name", "claimed_at", "closed_at", "closed_by", "note",
           "card_id", "reminders")


def _to_hash(ticket: Ticket) -> dict[str, str]:
    data = ticket.to_json()
    fields = {name: str(data[name]) for name in MUTABLE}
    fields["data"] = ticket.dumps()
    return fields


def _from_hash(fields: dict[str, str]) -> Ticket:
    base = Ticket.loads(fields["data"])
    return replace(
        base, state=TicketState(fields.get("state", base.state)),
        agent=fields.get("agent", ""), agent_name=fields.get("agent_name", ""),
        claimed_at=float(fields.get("claimed_at") or 0), closed_at=float(fields.get("closed_at")
                                                                       or 0),
        closed_by=fields.get("closed_by", ""), note=fields.get("note", ""),
        card_id=fields.get("card_id", ""), reminders=int(fields.get("reminders") or 0))


class RedisTicketStore:
    def __init__(self, client: aioredis.Redis, keys: Keys | None = None,
                 closed_ttl_s: int = 30 * 86400) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.closed_ttl_s = closed_ttl_s  # closed tickets stay readable this long
        self._claim = client.register_script(_CLAIM)
        self._close = client.register_script(_CLOSE)
        self._remind = client.register_script(_REMIND)
        self._lease = client.register_script(_LEASE)

    async def next_id(self) -> str:
        return f"T{await self.client.incr(self.keys.ticket_seq())}"

    async def create(self, ticket: Ticket) -> None:
        name = self.keys.ticket(ticket.id)
        if not await self.client.hsetnx(name, "data", ticket.dumps()):
            raise ValueError(f"ticket {ticket.id} already exists")
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(name, mapping=cast(Any, _to_hash(ticket)))
            pipe.zadd(self.keys.tickets_active(), {ticket.id: ticket.created})
            await pipe.execute()

    async def get(self, ticket_id: str) -> Ticket | None:
        fields = cast(dict[str, str], await self.client.hgetall(self.keys.ticket(ticket_id)))
        return _from_hash(fields) if "data" in fields else None

    async def active(self) -> list[Ticket]:
        ids = cast(list[str], await self.client.zrange(self.keys.tickets_active(), 0, -1))
        tickets = []
        for ticket_id in ids:
            ticket = await self.get(ticket_id)
            if ticket is not None and ticket.state.is_active:
                tickets.append(ticket)
        return tickets

    async def claim(self, ticket_id: str, agent: str, agent_name: str,
                    now: float) -> ClaimResult:
        won = int(await self._claim(keys=[self.keys.ticket(ticket_id)],
                                    args=[agent, agent_name, repr(now)]))
        ticket = await self.get(ticket_id) if won >= 0 else None
        return ClaimResult(won == 1 and ticket is not None, ticket)

    async def close(self, ticket_id: str, to: TicketState, now: float, by: str = "",
                    note: str = "", allowed_from: Sequence[TicketState] = ACTIVE_STATES,
                    ) -> Ticket | None:
        done = await self._close(
            keys=[self.keys.ticket(ticket_id), self.keys.tickets_active()],
            args=[ticket_id, str(to), repr(now), by, note, self.closed_ttl_s,
                  *[str(s) for s in allowed_from]])
        return await self.get(ticket_id) if int(done) else None

    async def set_card(self, ticket_id: str, card_id: str) -> None:
        name = self.keys.ticket(ticket_id)
        if await self.client.exists(name):
            await self.client.hset(name, "card_id", card_id)

    async def mark_reminded(self, ticket_id: str, seen_reminders: int) -> bool:
        return bool(int(await self._remind(keys=[self.keys.ticket(ticket_id)],
                                           args=[seen_reminders])))

    async def keep_transcript(self, transcript: StoredTranscript, ttl_s: int) -> None:
        now = time.time()
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.transcript(transcript.ticket_id), transcript.dumps(), ex=ttl_s)
            pipe.zadd(self.keys.transcripts(), {transcript.ticket_id: now + ttl_s})
            pipe.zremrangebyscore(self.keys.transcripts(), "-inf", now)
            await pipe.execute()

    async def transcripts(self) -> list[StoredTranscript]:
        ids = cast(list[str], await self.client.zrangebyscore(self.keys.transcripts(),
                                                              time.time(), "+inf"))
        if not ids:
            return []
        raw = cast(list[str | None], await self.client.mget(
            [self.keys.transcript(i) for i in ids]))
        kept = [StoredTranscript.loads(r) for r in raw if r is not None]
        return sorted(kept, key=lambda t: t.resolved_at)

    async def lease(self, owner: str, ttl_s: float) -> bool:
        return bool(int(await self._lease(keys=[self.keys.sweeper_lease()],
                                          args=[owner, max(1, int(ttl_s * 1000))])))

