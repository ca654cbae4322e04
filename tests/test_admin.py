"""`/support` commands: parsing (fuzzed), authorization (table of denied cases: the body never
runs), command behaviour, and live config seen by a second bot process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.actions import Action
from bot.admin import COMMANDS, AdminCommands, parse
from bot.admin_kb import MarkdownKbAdmin
from bot.admin_views import CommandReply
from bot.authz import AuthConfig, Authorizer, Caller
from bot.feedback import Feedback
from bot.interactions import Interactions
from bot.keys import Keys
from bot.knowledge import load_markdown_dir
from bot.service import Outcome
from bot.tickets import TicketState
from tests.conftest import REDIS_URL, RecordingOutbox
from tests.handoff_fakes import KB_DIR, FakeClock, RecordingDesk, Stack, make_stack, msg

AUTH = Authorizer(AuthConfig.build(
    admin_users=["UADMIN"], agent_users=["slack:UAGENT"], agent_groups=["S-AGENTS", "R-AGENT"],
    admin_permissions=["administrator", "manage_guild"]))
CUSTOMER = Caller("slack", "U1", "Ann")
STRANGER = Caller("slack", "U9", "Zed")
AGENT = Caller("slack", "UAGENT", "Bea")
GROUP_AGENT = Caller("slack", "U5", "Cy", groups=frozenset({"S-AGENTS"}))
DISCORD_MEMBER = Caller("discord", "D1", groups=frozenset({"R-OTHER"}),
                        permissions=frozenset({"send_messages"}))
DISCORD_AGENT = Caller("discord", "D2", "Dee", groups=frozenset({"R-AGENT"}))
DISCORD_ADMIN = Caller("discord", "D3", "Eve", permissions=frozenset({"manage_guild"}))
ADMIN = Caller("slack", "UADMIN", "Root")
KEY = msg("", "x").key


def admin_for(stack: Stack) -> AdminCommands:
    kb = MarkdownKbAdmin(KB_DIR, load_markdown_dir(KB_DIR))
    return AdminCommands(AUTH, stack.handoff, stack.live, stack.analytics, stack.store, kb,
                         clock=stack.clock)


def buttons_for(stack: Stack) -> Interactions:
    return Interactions(AUTH, stack.handoff, Feedback(stack.analytics.kv, stack.live.keys,
                                                      stack.analytics), stack.store, stack.clock)


@pytest.fixture
def stack(redis_keys: Keys) -> Stack:
    return make_stack("memory", redis_keys)


async def open_ticket(stack: Stack) -> str:
    await stack.bot.handle(msg("what is the meaning of life", "e1"), RecordingOutbox())
    return (await stack.store.load(KEY)).fields["ticket"]


# ---- parsing ------------------------------------------------------------------------------

WORDS = st.sampled_from(["help", "status", "stats", "tickets", "claim", "resolve", "handback",
                         "kb", "list", "search", "reload", "pause", "resume", "config", "get",
                         "set", "rate_limit", "answer_threshold", "business_hours", "all",
                         "mine", "open", "T1", "#t1", "-1", "0", "999999999999", "0.5", "'",
                         '"', "<#C1|x>", "\u00e9\u00e8", "\x00", "/support"])


class FuzzTarget:
    """One event loop and one admin handler (with an open ticket) for every example."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.stack = make_stack("memory", Keys("fuzz"))
        self.runner.run(open_ticket(self.stack))
        self.admin = admin_for(self.stack)

    def handle(self, text: str) -> CommandReply:
        return self.runner.run(self.admin.handle(ADMIN, text, channel="C1"))


@pytest.fixture(scope="module")
def fuzz_target() -> Iterator[FuzzTarget]:
    target = FuzzTarget()
    yield target
    target.runner.close()


@given(text=st.one_of(st.text(max_size=60), st.lists(WORDS, max_size=5).map(" ".join)))
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_gets_an_answer_and_never_raises(fuzz_target: FuzzTarget, text: str) -> None:
    assert parse(text) is not None
    reply = fuzz_target.handle(text)
    assert isinstance(reply, CommandReply) and reply.text.strip()
    assert "failed; the error is in the bot's log" not in reply.text  # no command crashed


def test_parse_resolves_groups_and_arguments() -> None:
    p = parse("  /support  kb   search  how do I pay ")
    assert p.command is COMMANDS["kb search"] and p.rest == "how do I pay"
    assert parse("").command is COMMANDS["help"]
    assert parse("kb frob").problem == "Usage: /support kb list|search <query>|reload"


# ---- authorization --------------------------------------------------------------------------

DENIED = [
    (CUSTOMER, "status"), (CUSTOMER, "claim T1"), (CUSTOMER, "stats 3"),
    (STRANGER, "tickets mine"), (CUSTOMER, "config get"),
    (AGENT, "config set rate_limit 1"), (AGENT, "kb reload"), (GROUP_AGENT, "pause"),
    (DISCORD_MEMBER, "tickets"), (DISCORD_MEMBER, "resolve T1 done"),
    (DISCORD_AGENT, "resume all"), (Caller("discord", "UAGENT"), "claim T1"),
]


@pytest.mark.parametrize(("caller", "text"), DENIED)
async def test_denied_commands_never_run_their_body(stack: Stack, caller: Caller,
                                                    text: str) -> None:
    ticket_id = await open_ticket(stack)
    admin = admin_for(stack)
    ran: list[str] = []

    async def spy(*args: object) -> CommandReply:
        ran.append(text)
        return CommandReply("ran")

    admin._handlers = dict.fromkeys(admin._handlers, spy)
    reply = await admin.handle(caller, text, channel="C1")
    assert not reply.ok and reply.text.startswith("Sorry, only") and ran == []
    ticket = await stack.tickets.get(ticket_id)
    assert ticket is not None and ticket.state is TicketState.OPEN


@pytest.mark.parametrize(("caller", "action"), [
    (CUSTOMER, Action.CLAIM), (DISCORD_MEMBER, Action.RESOLVE), (STRANGER, Action.HANDBACK),
    (STRANGER, Action.HELPFUL), (STRANGER, Action.NOT_HELPFUL), (STRANGER, Action.TALK_TO_HUMAN),
])
async def test_denied_buttons_change_nothing(stack: Stack, caller: Caller, action: Action) -> None:
    ticket_id = await open_ticket(stack)
    buttons = buttons_for(stack)
    value = ticket_id if action in (Action.CLAIM, Action.RESOLVE, Action.HANDBACK) else "a1"
    before = await stack.store.load(KEY, 100)
    reply = await buttons.handle(caller, action, value, KEY, RecordingOutbox())
    assert not reply.ok
    ticket = await stack.tickets.get(ticket_id)
    assert ticket is not None and ticket.state is TicketState.OPEN
    assert await stack.store.load(KEY, 100) == before
    assert await buttons.feedback.for_conversation(KEY) == []


async def test_allowed_callers_by_id_group_role_and_permission(stack: Stack) -> None:
    ticket_id = await open_ticket(stack)
    admin = admin_for(stack)
    assert (await admin.handle(GROUP_AGENT, f"claim {ticket_id}")).ok
    assert (await admin.handle(DISCORD_AGENT, "tickets")).text.startswith(ticket_id)
    assert (await admin.handle(DISCORD_ADMIN, "config set max_reminders 1")).ok
    help_text = (await admin.handle(CUSTOMER, "help")).text
    assert "/support help" in help_text and "claim" not in help_text


# ---- behaviour ---------------------------------------------------------------------------------

async def test_bad_arguments_get_usage_and_change_nothing(stack: Stack) -> None:
    ticket_id = await open_ticket(stack)
    admin = admin_for(stack)
    before = await stack.live.fresh()
    for text, expected in [
        ("claim", "Usage: /support claim <id>"), ("stats abc", "Usage: /support stats [days]"),
        ("tickets all", "Usage: /support tickets [open|mine]"),
        ("handback T1 T2", "Usage: /support handback <id>"),
        ("config set rate_limit", "Usage: /support config set <key> <value>"),
        ("config set rate_limit 0", "rate_limit: must be a whole number >= 1. Nothing was "
                                    "changed."),
        ("config set answer_threshold 2", "answer_threshold: must be between 0 and 1"),
        ("config set business_hours someday", "cannot read 'someday'"),
        ("config set colour red", "unknown config key 'colour'"),
        ("claim T404", "No ticket T404."), ("resolve #t404 note", "No ticket T404."),
        ("pause C1 C2", "Usage: /support pause [channel|all]"),
    ]:
        reply = await admin.handle(ADMIN, text, channel="C1")
        assert not reply.ok and expected in reply.text, (text, reply.text)
    assert await stack.live.fresh() == before
    ticket = await stack.tickets.get(ticket_id)
    assert ticket is not None and ticket.state is TicketState.OPEN


async def test_ticket_commands_and_listing(stack: Stack) -> None:
    ticket_id = await open_ticket(stack)
    admin = admin_for(stack)
    assert (await admin.handle(AGENT, "tickets mine")).text == "You have no active tickets."
    assert (await admin.handle(AGENT, f"claim #{ticket_id.lower()}")).ok
    mine = (await admin.handle(AGENT, "tickets mine")).text
    assert mine.startswith(f"{ticket_id}  claimed, Bea")
    other = await admin.handle(GROUP_AGENT, f"claim {ticket_id}")
    assert not other.ok and "already claimed by Bea" in other.text
    status = (await admin.handle(AGENT, "status")).text
    assert "Redis: ok" in status and "tickets: 0 open, 1 claimed" in status
    assert (await admin.handle(AGENT, f"resolve {ticket_id} refunded twice")).ok
    ticket = await stack.tickets.get(ticket_id)
    assert ticket is not None and ticket.note == "refunded twice"
    assert (await admin.handle(AGENT, "tickets")).text == "No active tickets."


async def test_kb_commands(stack: Stack) -> None:
    admin = admin_for(stack)
    listing = (await admin.handle(AGENT, "kb list")).text
    assert listing.startswith("24 articles:") and "reset-password — Reset your password" in listing
    found = (await admin.handle(AGENT, "kb search forgot my password")).text
    assert found.splitlines()[0].startswith("reset-password")
    assert "No article matches" in (await admin.handle(AGENT, "kb search zzzz qqqq")).text
    assert (await admin.handle(ADMIN, "kb reload")).text == "Knowledge base reloaded: 24 articles"


async def test_pause_silences_one_channel_until_resumed(stack: Stack) -> None:
    admin = admin_for(stack)
    assert (await admin.handle(ADMIN, "pause", channel="C1")).ok
    outbox = RecordingOutbox()
    assert await stack.bot.handle(msg("How do I reset my password?", "e1"), outbox) \
        is Outcome.PAUSED
    assert outbox.log == [] and (await stack.store.load(KEY)).turns[-1].role == "customer"
    other = msg("How do I reset my password?", "e2", thread="t2")
    assert await stack.bot.handle(other, outbox) is Outcome.PAUSED  # same channel C1
    reply = await admin.handle(ADMIN, "resume <#C1|support>")
    assert reply.ok and "Resumed in C1" in reply.text
    assert await stack.bot.handle(msg("How do I reset my password?", "e3"), outbox) \
        is Outcome.ANSWERED


@pytest.fixture
async def two_processes(redis_keys: Keys) -> AsyncIterator[tuple[Stack, Stack]]:
    clients = [aioredis.from_url(REDIS_URL, decode_responses=True) for _ in range(2)]
    clock = FakeClock()
    yield (make_stack("redis", redis_keys, client=clients[0], clock=clock, desk=RecordingDesk()),
           make_stack("redis", redis_keys, client=clients[1], clock=clock, desk=RecordingDesk()))
    for c in clients:
        await c.aclose()


async def test_config_set_in_one_process_is_seen_by_another(
        two_processes: tuple[Stack, Stack]) -> None:
    a, b = two_processes
    question = "How do I reset my password?"
    assert await b.bot.handle(msg(question, "e1", thread="t1"), RecordingOutbox()) \
        is Outcome.ANSWERED
    reply = await admin_for(a).handle(ADMIN, "config set answer_threshold 1")
    assert reply.ok and "answer_threshold = '1.0'" in reply.text
    assert await b.bot.handle(msg("how do i reset password quickly", "e2", thread="t2"),
                              RecordingOutbox()) is Outcome.ESCALATED
    await admin_for(a).handle(ADMIN, "config set rate_limit 1")
    await admin_for(a).handle(ADMIN, "config set answer_threshold 0.2")
    outcomes = [await b.bot.handle(msg(question, f"r{i}", user="U7", thread="t3"),
                                   RecordingOutbox()) for i in range(2)]
    assert outcomes == [Outcome.ANSWERED, Outcome.RATE_LIMITED]
    got = (await admin_for(b).handle(AGENT, "config get rate_limit")).text
    assert got == "rate_limit = '1'"


async def test_admins_pausing_channels_at_once_in_two_processes_both_win(
        two_processes: tuple[Stack, Stack]) -> None:
    a, b = two_processes
    channels = [f"C{i}" for i in range(10)]
    # ten pauses racing from two processes: each is its own write, none undoes another
    await asyncio.gather(*(admin_for(a if i % 2 else b).handle(ADMIN, f"pause {c}")
                           for i, c in enumerate(channels)))
    assert (await a.live.fresh()).paused_channels == frozenset(channels)
    await asyncio.gather(admin_for(a).handle(ADMIN, "resume C3"),
                         admin_for(b).handle(ADMIN, "resume C4"),
                         admin_for(b).handle(ADMIN, "pause C10"))
    assert (await b.live.fresh()).paused_channels == frozenset(
        [*(c for c in channels if c not in ("C3", "C4")), "C10"])
    reply = await admin_for(a).handle(ADMIN, "resume all")
    assert reply.ok and not (await b.live.fresh()).paused_channels
