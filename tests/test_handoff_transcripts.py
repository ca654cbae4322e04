"""Kept transcripts -> JSONL training examples, masked; `supportbot transcripts export`."""

from __future__ import annotations

import json
from pathlib import Path

import redis.asyncio as aioredis

from bot.keys import Keys
from bot.models import Turn
from bot.tickets import StoredTranscript
from bot.tickets_redis import RedisTicketStore
from bot.transcripts import SYSTEM_PROMPT, to_example
from tests.conftest import REDIS_URL
from tests.test_cli_chat import run_cli

KEPT = StoredTranscript("T7", "low_confidence", 10.0, (
    Turn("bot", "Hi! How can I help?", 1.0),
    Turn("customer", "My invoice is wrong", 2.0),
    Turn("customer", "call me on +44 20 7946 0958", 3.0),
    Turn("bot", "I've asked a person to follow up.", 4.0),
    Turn("system", "Bea has joined the conversation.", 5.0),
    Turn("agent", "Hi Ann, Bea here. Fixed it, mail bea@tallyhub.example if not.", 6.0),
    Turn("customer", "thanks", 7.0),
), names=("Ann", "Bea"))


def test_example_is_chat_formatted_and_masked() -> None:
    example = to_example(KEPT)
    assert example is not None
    messages = example["messages"]
    assert messages == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "My invoice is wrong\ncall me on [phone]"},
        {"role": "assistant", "content": "Hi [name], [name] here. Fixed it, mail [email] if not."},
    ]
    no_agent = StoredTranscript("T8", "x", 1.0, (Turn("customer", "hi", 1.0),))
    assert to_example(no_agent) is None


async def test_cli_exports_kept_transcripts(tmp_path: Path, redis_keys: Keys) -> None:
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    await RedisTicketStore(client, redis_keys).keep_transcript(KEPT, ttl_s=600)
    await client.aclose()
    out = tmp_path / "train.jsonl"
    result = run_cli("transcripts", "export", "--out", str(out),
                     env={"SUPPORTBOT_REDIS_URL": REDIS_URL,
                          "SUPPORTBOT_REDIS_PREFIX": redis_keys.prefix})
    assert result.returncode == 0, result.stderr
    assert "wrote 1 training examples" in result.stdout
    [line] = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["messages"][2]["content"].startswith("Hi [name]")
    bad = run_cli("transcripts", "export", "--out", str(tmp_path / "no" / "x.jsonl"),
                  env={"SUPPORTBOT_REDIS_URL": REDIS_URL})
    assert bad.returncode == 2 and "no such directory" in bad.stderr
