"""`supportbot <command>` as a real process against the fake Slack and the fake engine, stopped
the way docker stop and Kubernetes stop it: SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from tests.fake_engine import FakeEngine
from tests.slack.conftest import SUPPORT_CHANNEL
from tests.slack.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack

REPO = Path(__file__).resolve().parents[1]


def slack_env(slack: FakeSlack, engine: FakeEngine) -> dict[str, str]:
    """This environment without the developer's SUPPORTBOT_*, plus Slack in Socket Mode
    pointed at the fake and SUPPORTBOT_LLM=http at the fake engine."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SUPPORTBOT_")}
    return env | {"SUPPORTBOT_SLACK_BOT_TOKEN": BOT_TOKEN, "SUPPORTBOT_SLACK_APP_TOKEN": APP_TOKEN,
                  "SUPPORTBOT_SLACK_API_URL": slack.api_url, "SUPPORTBOT_LLM": "http",
                  "SUPPORTBOT_LLM_URL": engine.url, "SUPPORTBOT_SUPPORT_CHANNELS": SUPPORT_CHANNEL}


async def run_then_sigterm(command: str, env: Mapping[str, str],
                           meanwhile: Callable[[], Awaitable[None]],
                           stop_within_s: float = 60) -> tuple[int | None, str]:
    """Start `supportbot command`, await `meanwhile()`, send SIGTERM and wait for the exit.
    Returns (exit status, stderr: the log). Killed if it outlives the test."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", command, env={**env, "PYTHONPATH": str(REPO)},
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await meanwhile()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), stop_within_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, err.decode()
