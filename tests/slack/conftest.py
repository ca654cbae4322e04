"""Fixtures for the Slack end-to-end tests: a fake Slack, the real bot pipeline on real Redis,
and the real slack-bolt app connected to the fake over Socket Mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.slack.app import SlackAdapter
from adapters.slack.client import make_client
from adapters.slack.runners import SocketModeRunner
from bot.answer_kb import KnowledgeBaseAnswerer
from bot.keys import Keys
from bot.knowledge import load_markdown_dir
from bot.ports import Answerer
from bot.routing import MessageRouter
from bot.service import SupportBot
from bot.store_redis import RedisStore
from tests.conftest import REDIS_URL
from tests.slack.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack

KB_DIR = Path(__file__).resolve().parents[2] / "examples" / "kb"
SUPPORT_CHANNEL = "C0SUPPORT"
AGENT_CHANNEL = "C0AGENTS"
SIGNING_SECRET = "test-signing-secret"


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


@pytest.fixture
def bot(store: RedisStore, answerer: Answerer) -> SupportBot:
    return SupportBot(store, answerer)


def make_adapter(bot: SupportBot, fake: FakeSlack) -> SlackAdapter:
    return SlackAdapter(bot, make_client(BOT_TOKEN, fake.api_url),
                        MessageRouter(bot.store, [SUPPORT_CHANNEL]),
                        signing_secret=SIGNING_SECRET)


@pytest.fixture
async def slack(bot: SupportBot, fake_slack: FakeSlack) -> AsyncIterator[SlackAdapter]:
    """The adapter connected to the fake Slack over Socket Mode."""
    adapter = make_adapter(bot, fake_slack)
    runner = SocketModeRunner(adapter, APP_TOKEN)
    await runner.start()
    await fake_slack.wait_connected()
    yield adapter
    await runner.stop()
