"""Fixtures for the Slack end-to-end tests: a fake Slack, the real bot pipeline with handoff,
admin commands and buttons on real Redis, and the real slack-bolt app connected to the fake
over Socket Mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.app import SlackAdapter
from adapters.slack.client import make_client
from adapters.slack.desk import SlackAgentDesk
from adapters.slack.runners import SocketModeRunner
from bot.admin import AdminCommands
from bot.admin_store import RedisKeyValue
from bot.analytics import Analytics
from bot.answer_kb import KnowledgeBaseAnswerer
from bot.authz import AuthConfig, Authorizer
from bot.feedback import Feedback
from bot.handoff import Handoff
from bot.interactions import Interactions
from bot.keys import Keys
from bot.knowledge import load_markdown_dir
from bot.live_config import ConfigSnapshot, LiveConfig
from bot.ports import Answerer
from bot.routing import MessageRouter
from bot.service import SupportBot
from bot.store_redis import RedisStore
from bot.tickets_redis import RedisTicketStore
from tests.conftest import REDIS_URL
from tests.slack.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack

KB_DIR = Path(__file__).resolve().parents[2] / "examples" / "kb"
SUPPORT_CHANNEL = "C0SUPPORT"
AGENT_CHANNEL = "C0AGENTS"
SIGNING_SECRET = "test-signing-secret"
AGENT = "U0AGENT"
ADMIN = "U0ADMIN"
CUSTOMER = "U0CUST"


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def store(redis_keys: Keys) -> AsyncIterator[RedisStore]:
    s = RedisStore.from_url(REDIS_URL, redis_keys)
    yield s
    await s.close()


@pytest.fixture
def answerer() -> Answerer:
    return KnowledgeBaseAnswerer(load_markdown_dir(KB_DIR))


@dataclass
class Stack:
    """Everything one Slack-connected process holds, built the way production wires it."""

    bot: SupportBot
    client: AsyncWebClient
    live: LiveConfig
    handoff: Handoff
    admin: AdminCommands
    interactions: Interactions
    tickets: RedisTicketStore

    def adapter(self) -> SlackAdapter:
        return SlackAdapter(self.bot, self.client, MessageRouter(self.bot.store, self.live),
                            signing_secret=SIGNING_SECRET, admin=self.admin,
                            interactions=self.interactions)


@pytest.fixture
def stack(store: RedisStore, redis_keys: Keys, answerer: Answerer,
          fake_slack: FakeSlack) -> Stack:
    client = make_client(BOT_TOKEN, fake_slack.api_url)
    kv = RedisKeyValue(store.client)
    live = LiveConfig(kv, redis_keys, ConfigSnapshot(support_channels=(SUPPORT_CHANNEL,),
                                                     agent_channel=AGENT_CHANNEL))
    tickets = RedisTicketStore(store.client, redis_keys)
    analytics = Analytics(kv, redis_keys)
    handoff = Handoff(tickets, store, {"slack": SlackAgentDesk(client)}, live,
                      analytics=analytics)
    authorizer = Authorizer(AuthConfig.build(admin_users=[ADMIN], agent_users=[AGENT]))
    bot = SupportBot(store, answerer, handoff=handoff, live=live, analytics=analytics)
    return Stack(bot, client, live, handoff,
                 AdminCommands(authorizer, handoff, live, analytics, store),
                 Interactions(authorizer, handoff, Feedback(kv, redis_keys, analytics), store),
                 tickets)


@pytest.fixture
def bot(stack: Stack) -> SupportBot:
    return stack.bot


@pytest.fixture
async def slack(stack: Stack, fake_slack: FakeSlack) -> AsyncIterator[SlackAdapter]:
    """The adapter connected to the fake Slack over Socket Mode."""
    adapter = stack.adapter()
    runner = SocketModeRunner(adapter, APP_TOKEN)
    await runner.start()
    await fake_slack.wait_connected()
    yield adapter
    await runner.stop()
