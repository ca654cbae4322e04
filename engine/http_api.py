"""OpenAI-compatible HTTP API over an AsyncEngine (aiohttp).

    POST /v1/chat/completions   streaming (SSE, ``"stream": true``) or not
    POST /v1/embeddings         float lists, or base64 float32 as the openai package asks
    GET  /v1/models · /healthz · /metrics (Prometheus)

Enough of the API for the openai package, LangChain-style clients and our own
OpenAIHTTPLLM. Extensions: each choice carries ``token_ids``; ``ignore_eos``, ``top_k`` and
``repetition_penalty`` are accepted. A full engine queue answers 429; a client that
disconnects mid-stream cancels its request, freeing the KV slot.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from engine.async_engine import AsyncEngine, RequestStream
from engine.errors import ContextLengthExceeded, EngineError
from engine.metrics import CONTENT_TYPE
from engine.requests import Chunk, EngineBusy, GenerationParams


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code

    def response(self) -> web.Response:
        return web.json_response({"error": _error_body(self.message, self.kind, self.code)},
                                 status=self.status)


def _error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"message": message, "type": kind, "param": None, "code": code}


def build_app(engine: AsyncEngine, embed_model: str | None = None) -> web.Application:
    api = _Api(engine, embed_model or f"{engine.model_name}-embed")
    app = web.Application(middlewares=[_errors])
    app.router.add_post("/v1/chat/completions", api.chat)
    app.router.add_post("/v1/embeddings", api.embeddings)
    app.router.add_get("/v1/models", api.models)
    app.router.add_get("/healthz", api.health)
    app.router.add_get("/metrics", api.metrics)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as exc:
        return exc.response()
    except EngineBusy as exc:
        return ApiError(429, str(exc), "server_busy", "engine_busy").response()
    except ContextLengthExceeded as exc:
        return ApiError(400, str(exc), code="context_length_exceeded").response()


class _Api:
    def __init__(self, engine: AsyncEngine, embed_model: str) -> None:
        self.engine = engine
        self.embed_model = embed_model

    # -- chat ----------------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        messages = _messages(body.get("messages"))
        if int(body.get("n", 1)) != 1:
            raise ApiError(400, "only n=1 is supported", code="unsupported_parameter")
        params = _sampling(body)
        try:
            prompt = self.engine.tokenizer.chat_prompt(messages)
        except EngineError as exc:
            raise ApiError(400, str(exc)) from exc
        stream = self.engine.submit(prompt, params)
        want_logprobs = bool(body.get("logprobs"))
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
                "model": self.engine.model_name}
        usage_opt = (body.get("stream_options") or {}).get("include_usage", False)
        if body.get("stream"):
            return await self._stream(request, stream, meta, want_logprobs, len(prompt),
                                      bool(usage_opt))
        async with stream:
            chunks = [c async for c in stream]
        last = chunks[-1]
        if last.finish_reason == "error":
            raise ApiError(500 if last.error != "deadline exceeded" else 504,
                           last.error or "generation failed", "server_error")
        ids = [t for c in chunks for t in c.token_ids]
        choice = {"index": 0, "message": {"role": "assistant",
                                          "content": "".join(c.text for c in chunks)},
                  "finish_reason": last.finish_reason, "token_ids": ids,
                  "logprobs": self._logprobs(chunks) if want_logprobs else None}
        return web.json_response({**meta, "object": "chat.completion", "choices": [choice],
                                  "usage": _usage(len(prompt), len(ids))})

    async def _stream(self, request: web.Request, stream: RequestStream, meta: dict[str, Any],
                      want_logprobs: bool, n_prompt: int, usage: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        base = {**meta, "object": "chat.completion.chunk"}

        async def send(obj: Mapping[str, Any]) -> None:
            await resp.write(f"data: {json.dumps(obj)}\n\n".encode())

        n_out = 0
        # A disconnected client makes write() raise; leaving the `async with` cancels the
        # request in the engine.
        async with stream:
            await send({**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                   "content": ""},
                                             "finish_reason": None}]})
            async for chunk in stream:
                n_out += len(chunk.token_ids)
                if chunk.finish_reason == "error":
                    await send({"error": _error_body(chunk.error or "generation failed",
                                                     "server_error")})
                    break
                choice: dict[str, Any] = {
                    "index": 0, "delta": {"content": chunk.text} if chunk.text else {},
                    "finish_reason": chunk.finish_reason, "token_ids": list(chunk.token_ids)}
                if want_logprobs:
                    choice["logprobs"] = self._logprobs([chunk])
                await send({**base, "choices": [choice]})
            if usage:
                await send({**base, "choices": [], "usage": _usage(n_prompt, n_out)})
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _logprobs(self, chunks: list[Chunk]) -> dict[str, Any]:
        content = []
        for chunk in chunks:
            for tid, lp in zip(chunk.token_ids, chunk.logprobs, strict=True):
                token = self.engine.tokenizer.decode([tid], skip_special_tokens=False)
                content.append({"token": token, "logprob": lp,
                                "bytes": list(token.encode()), "top_logprobs": []})
        return {"content": content}

    # -- embeddings ----------------------------------------------------------------------------
    async def embeddings(self, request: web.Request) -> web.Response:
        body = await _json(request)
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or \
                not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "'input' must be a string or a non-empty list of strings")
        if not self.engine.has_embedder:
            raise ApiError(400, "this server has no embedding model", code="model_not_found")
        vectors = await self.engine.embed(texts)
        as_b64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": _b64(v) if as_b64 else v} for i, v in enumerate(vectors)]
        return web.json_response({"object": "list", "data": data, "model": self.embed_model,
                                  "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    # -- the rest ------------------------------------------------------------------------------
    async def models(self, request: web.Request) -> web.Response:
        names = [self.engine.model_name] + ([self.embed_model] if self.engine.has_embedder
                                            else [])
        return web.json_response({"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "supportbot"}
            for n in names]})

    async def health(self, request: web.Request) -> web.Response:
        sched = self.engine.core.sched
        return web.json_response({"status": "ok", "running": len(sched.running),
                                  "waiting": len(sched.waiting)})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.engine.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE})


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "'messages' must be a non-empty list", code="invalid_messages")
    out = []
    for m in raw:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, "each message needs a 'role'", code="invalid_messages")
        content = m.get("content") or ""
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            content = "".join(p.get("text", "") for p in content
                              if isinstance(p, dict) and p.get("type") == "text")
        out.append({"role": m["role"], "content": str(content)})
    return out


def _sampling(body: Mapping[str, Any]) -> GenerationParams:
    stop = body.get("stop") or ()
    try:
        return GenerationParams(
            max_tokens=int(body.get("max_completion_tokens") or body.get("max_tokens") or 256),
            temperature=float(body.get("temperature", 1.0)),  # the OpenAI default
            top_p=float(body.get("top_p", 1.0)), top_k=int(body.get("top_k", 0)),
            repetition_penalty=float(body.get("repetition_penalty", 1.0)),
            seed=None if body.get("seed") is None else int(body["seed"]),
            stop=(stop,) if isinstance(stop, str) else tuple(str(s) for s in stop),
            ignore_eos=bool(body.get("ignore_eos", False)))
    except (TypeError, ValueError) as exc:
        raise ApiError(400, str(exc)) from exc


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def serve(engine: AsyncEngine, host: str, port: int) -> web.AppRunner:
    """Start serving in the running loop; returns the runner (``await runner.cleanup()``)."""
    runner = web.AppRunner(build_app(engine))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
