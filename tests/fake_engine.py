"""A fake OpenAI-compatible engine server for process tests that set SUPPORTBOT_LLM=http:
the real client path (adapters/llm_factory.build_llm) without loading a model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

CITATION = "help.tallyhub.example/reset-password"  # examples/kb/reset-password.md url
# What the fake engine generates: a sentence of that article, so that an answer is the same
# whether the answerer generates it or quotes the article; ticket summaries show it verbatim.
GENERATED = "We email a reset link that works for 30 minutes."
ANSWER = "We email a reset link"


class FakeEngine:
    """An OpenAI-compatible server that streams GENERATED and records each request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for text, finish in ((GENERATED, None), ("", "stop")):
            chunk = {"choices": [{"index": 0, "delta": {"content": text},
                                  "finish_reason": finish}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture
async def engine() -> AsyncIterator[FakeEngine]:
    server = FakeEngine()
    await server.start()
    yield server
    await server.stop()
