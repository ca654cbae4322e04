"""adapters/lifecycle.serve_adapters, the start/stop sequence `supportbot run`, `slack` and
`discord` share: the engine client built from the settings off the event loop and closed
last, one stack and sweeper, and the unwinding order on stop, on a crash and mid-load."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

import adapters.lifecycle as lifecycle
from adapters.lifecycle import Adapter, serve_adapters
from adapters.wiring import build_support
from bot.settings import Settings, load_settings


class FakeLLM:
    """An engine client that records where it was built and when it is closed."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def stream_chat(self, messages: Sequence[dict[str, str]], max_tokens: int = 256,
                          stop: Sequence[str] = (), temperature: float = 0.0
                          ) -> AsyncIterator[Any]:
        raise NotImplementedError
        yield  # an async generator, like the real clients

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise NotImplementedError

    async def close(self) -> None:
        self.events.append("engine client closed")


class Harness:
    """A fake platform whose builder, start and stop record what happened, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[str] = []
        self.monkeypatch = monkeypatch
        self.connection: asyncio.Future[None] | None = None
        self.started = asyncio.Event()  # the platform's connection loop is running
        self.sweeping = asyncio.Event()
        self.built_with: list[Settings] = []
        self.load_gate = threading.Event()
        self.load_gate.set()
        self.llm = FakeLLM(self.events)
        monkeypatch.setattr(lifecycle, "build_llm", self.build_llm)

    def build_llm(self, settings: Settings) -> FakeLLM:
        self.load_gate.wait(10)  # a slow model load, when a test holds the gate
        on_loop_thread = threading.current_thread() is threading.main_thread()
        self.events.append(f"engine client built ({settings.llm}, "
                           f"{'on' if on_loop_thread else 'off'} the event loop)")
        return self.llm

    def build(self, settings: Settings) -> Adapter:
        self.built_with.append(settings)
        support = build_support(settings, {})

        async def close_stack() -> None:
            self.events.append("stack closed")

        async def sweep(stop: asyncio.Event | None = None) -> None:
            self.sweeping.set()
            try:
                await asyncio.Event().wait()
            finally:
                self.events.append("sweeper stopped")

        self.monkeypatch.setattr(support, "close", close_stack)
        self.monkeypatch.setattr(support.sweeper, "run", sweep)

        async def connection_loop() -> None:  # ends when a test fails the connection
            self.connection = asyncio.get_running_loop().create_future()
            self.started.set()
            await self.connection

        async def start() -> asyncio.Task[None]:
            self.events.append("platform started")
            return asyncio.create_task(connection_loop())

        async def stop() -> None:
            self.events.append("platform stopped taking events and finished its replies")

        return Adapter("fake", support, start, stop)


@pytest.fixture
def settings() -> Settings:
    return load_settings(llm="http", llm_url="http://127.0.0.1:9/v1")


async def test_builds_the_engine_client_off_the_loop_and_unwinds_in_reverse(
        monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    h = Harness(monkeypatch)
    stop = asyncio.Event()
    process = asyncio.create_task(serve_adapters("test", settings, [h.build], stop))
    await asyncio.wait_for(asyncio.gather(h.started.wait(), h.sweeping.wait()), 10)
    stop.set()
    await asyncio.wait_for(process, 5)
    assert h.events == [
        "engine client built (http, off the event loop)",
        "platform started",
        "platform stopped taking events and finished its replies",
        "sweeper stopped",
        "stack closed",
        "engine client closed",
    ]
    assert h.built_with == [settings]


async def test_stop_during_the_model_load_connects_nowhere(monkeypatch: pytest.MonkeyPatch,
                                                           settings: Settings) -> None:
    h = Harness(monkeypatch)
    h.load_gate.clear()
    stop = asyncio.Event()
    process = asyncio.create_task(serve_adapters("test", settings, [h.build], stop))
    await asyncio.sleep(0.05)
    stop.set()  # the loop is free while the model loads: SIGTERM is seen at once
    h.load_gate.set()
    await asyncio.wait_for(process, 5)
    assert h.built_with == []
    assert h.events == ["engine client built (http, off the event loop)",
                        "engine client closed"]


async def test_a_given_engine_client_is_used_and_left_open(monkeypatch: pytest.MonkeyPatch,
                                                           settings: Settings) -> None:
    h = Harness(monkeypatch)
    given = FakeLLM(h.events)
    stop = asyncio.Event()
    process = asyncio.create_task(serve_adapters("test", settings, [h.build], stop, given))
    await asyncio.wait_for(h.started.wait(), 10)
    stop.set()
    await asyncio.wait_for(process, 5)
    assert not any(e.startswith("engine client") for e in h.events)  # its owner closes it


async def test_a_platform_loop_that_ends_takes_the_process_down(
        monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    h = Harness(monkeypatch)
    process = asyncio.create_task(serve_adapters("test", settings, [h.build],
                                                 asyncio.Event()))
    await asyncio.wait_for(h.started.wait(), 10)
    assert h.connection is not None
    h.connection.set_exception(ConnectionError("token revoked"))
    with pytest.raises(ConnectionError, match="token revoked"):
        await asyncio.wait_for(process, 5)
    assert h.events[-3:] == ["sweeper stopped", "stack closed", "engine client closed"]
    assert "platform stopped taking events and finished its replies" in h.events
