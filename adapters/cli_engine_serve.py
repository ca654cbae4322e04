"""`supportbot engine [--http HOST:PORT] [--workers N]`: run the shared engine service.

Each engine process loads the model once and batches everything it serves:
  * with SUPPORTBOT_REDIS_URL set, it is a Redis Streams worker (consumer group on
    ``{prefix}:engine:req``) for every bot process using ``SUPPORTBOT_LLM=redis``;
  * with ``--http``, it also serves the OpenAI-compatible API from the same engine.
``--workers N`` starts N-1 more worker processes (Redis only; each its own engine), e.g. one
per GPU. SIGTERM/SIGINT stop taking requests; unfinished ones are reclaimed by other workers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
from typing import Any

from adapters.serve import serve_forever, stop_on_signals
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("engine", help="run the shared engine: Redis worker and/or HTTP API")
    p.add_argument("--http", metavar="HOST:PORT", help="serve the OpenAI-compatible API")
    p.add_argument("--workers", type=int, default=1, help="engine processes (Redis workers)")
    p.add_argument("--kv-budget-mb", type=int, default=2048, help="KV-cache memory budget")
    p.add_argument("--max-len", type=int, default=2048, help="tokens per sequence")
    p.add_argument("--max-batch", type=int, default=32, help="sequences decoded together")
    p.add_argument("--max-queue", type=int, default=256, help="waiting requests before 429")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-embeddings", action="store_true", help="do not load the embedder")
    p.set_defaults(func=run_engine)


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--http wants HOST:PORT, got {value!r}")
    return host or "0.0.0.0", int(port)


def run_engine(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        address = parse_host_port(args.http) if args.http else None
    except (SettingsError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.workers < 1:
        print("engine: --workers must be >= 1", file=sys.stderr)
        return 2
    if not settings.redis_url and (address is None or args.workers > 1):
        print("engine: nothing to serve. Set SUPPORTBOT_REDIS_URL to run Redis workers "
              "(needed for --workers > 1), or pass --http HOST:PORT", file=sys.stderr)
        return 2
    children = [_spawn_worker(args) for _ in range(args.workers - 1)]
    try:
        return serve_forever(_serve(settings, args, address))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait()


def _spawn_worker(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """Another engine process, same options, Redis only."""
    argv = [sys.executable, "-m", "adapters.cli", "engine", "--workers", "1",
            "--kv-budget-mb", str(args.kv_budget_mb), "--max-len", str(args.max_len),
            "--max-batch", str(args.max_batch), "--max-queue", str(args.max_queue),
            "--threads", str(args.threads)]
    if args.no_embeddings:
        argv.append("--no-embeddings")
    return subprocess.Popen(argv, env=os.environ.copy())


async def _serve(settings: Settings, args: argparse.Namespace,
                 address: tuple[str, int] | None) -> None:
    import redis.asyncio as aioredis

    from engine.async_engine import EngineConfig, load_engine
    from engine.http_api import serve
    from engine.keys import EngineKeys
    from engine.worker import EngineWorker

    config = EngineConfig(kv_budget_bytes=args.kv_budget_mb << 20, max_len=args.max_len,
                          max_batch=args.max_batch, max_queue=args.max_queue,
                          threads=args.threads or None)
    # Loading takes seconds of CPU: off the loop, so signals are still handled meanwhile.
    engine = await asyncio.to_thread(load_engine, settings.model or None,
                                     settings.embed_model or None, config,
                                     not args.no_embeddings)
    plan = engine.core.plan
    log.info("engine %s: %d sequence slots of %d tokens (+%d prefix-cache slots), %.0f MiB KV",
             engine.model_name, plan.running, plan.max_len, plan.prefix,
             plan.total_bytes / 2**20)
    stop = asyncio.Event()
    stop_on_signals(stop)
    runner = None
    worker_task = None
    client = None
    try:
        if address is not None:
            runner = await serve(engine, *address)
            log.info("OpenAI-compatible API on http://%s:%d/v1", *address)
        if settings.redis_url:
            client = aioredis.from_url(settings.redis_url, decode_responses=True)
            worker = EngineWorker(client, engine, EngineKeys(settings.redis_prefix))
            worker_task = asyncio.create_task(worker.run(stop))
        # A worker that dies (Redis gone for good) ends the process, so a supervisor restarts it.
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if worker_task is not None:
            waiters.append(worker_task)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        if worker_task is not None:
            await worker_task
        if runner is not None:
            await runner.cleanup()
        if client is not None:
            await client.aclose()
        await engine.close()
