"""`supportbot engine` as a real process (HTTP API + Redis worker on one engine), and the
SUPPORTBOT_LLM client factory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from adapters.llm_factory import build_llm
from bot.keys import Keys
from bot.ports import GenerationChunk
from bot.settings import SettingsError, load_settings
from engine.clients import OpenAIHTTPLLM, RedisLLM
from tests.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "Can I export my data to CSV?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_engine_command_serves_http_and_redis_then_stops_on_sigterm(
        tiny_dir: Path, redis_keys: Keys) -> None:
    port = free_port()
    env = {**os.environ, "SUPPORTBOT_MODEL": str(tiny_dir), "SUPPORTBOT_REDIS_URL": REDIS_URL,
           "SUPPORTBOT_REDIS_PREFIX": redis_keys.prefix, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
        [sys.executable, "-m", "adapters.cli", "engine", "--http", f"127.0.0.1:{port}",
         "--no-embeddings", "--kv-budget-mb", "16", "--max-len", "256"], cwd=ROOT, env=env)
    llm = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(600):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "engine process exited"
                await asyncio.sleep(0.1)
            resp = await http.post("/v1/chat/completions", json={
                "messages": MESSAGES, "max_tokens": 12, "temperature": 0})
        assert resp.status_code == 200
        http_text = resp.json()["choices"][0]["message"]["content"]
        settings = load_settings(llm="redis", redis_url=REDIS_URL,
                                 redis_prefix=redis_keys.prefix)
        llm = build_llm(settings)
        assert isinstance(llm, RedisLLM)
        chunks = [c async for c in llm.stream_chat(MESSAGES, max_tokens=12)]
        assert "".join(c.text for c in chunks) == http_text  # same engine, same greedy answer
        assert chunks[-1].finish_reason in ("stop", "length")
    finally:
        if llm is not None:
            await llm.close()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
    assert code == 0


def test_llm_setting_selects_the_client() -> None:
    http = build_llm(load_settings(llm="http", llm_url="http://127.0.0.1:9/v1"))
    assert isinstance(http, OpenAIHTTPLLM) and http.base_url == "http://127.0.0.1:9/v1"
    redis = build_llm(load_settings(llm="redis", llm_url="redis://127.0.0.1:6379/0",
                                    redis_prefix="pfx"))
    assert isinstance(redis, RedisLLM) and redis.keys.requests == "pfx:engine:req"
    with pytest.raises(SettingsError, match="llm_url"):
        load_settings(llm="http")
    with pytest.raises(SettingsError, match="SUPPORTBOT_LLM"):
        load_settings(llm="carrier-pigeon")


def test_engine_command_without_anything_to_serve_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "adapters.cli", "engine"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "nothing to serve" in done.stderr


async def test_engine_workers_flag_runs_another_serving_process_and_stops_it(
        tiny_dir: Path, redis_keys: Keys) -> None:
    env = {**os.environ, "SUPPORTBOT_MODEL": str(tiny_dir), "SUPPORTBOT_REDIS_URL": REDIS_URL,
           "SUPPORTBOT_REDIS_PREFIX": redis_keys.prefix, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
        [sys.executable, "-m", "adapters.cli", "engine", "--workers", "2", "--no-embeddings",
         "--kv-budget-mb", "16", "--max-len", "256"], cwd=ROOT, env=env)
    llm = build_llm(load_settings(llm="redis", redis_url=REDIS_URL,
                                  redis_prefix=redis_keys.prefix))
    children: list[int] = []
    try:
        for _ in range(600):
            children = _children(proc.pid)
            if children:
                break
            await asyncio.sleep(0.1)
        assert len(children) == 1, "--workers 2 should start one more engine process"
        first = await _text(llm.stream_chat(MESSAGES, max_tokens=8))  # someone serves
        # Freeze the parent: only the extra process can take the next requests.
        proc.send_signal(signal.SIGSTOP)
        try:
            answers = await asyncio.wait_for(asyncio.gather(*(
                _text(llm.stream_chat(MESSAGES, max_tokens=8)) for _ in range(3))), 120)
        finally:
            proc.send_signal(signal.SIGCONT)
        assert answers == [first] * 3  # greedy: the other process answers the same
    finally:
        await llm.close()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
    assert code == 0
    for pid in children:  # the parent stopped its extra worker before exiting
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(pid) and fields.get("State", "")[:1] != "Z":
            found.append(int(entry.name))
    return found


async def _text(chunks: AsyncIterator[GenerationChunk]) -> str:
    return "".join([c.text async for c in chunks])
