"""A Redis engine worker on the tiny model, run as a separate process by the worker tests
(so a test can SIGKILL it mid-generation):

    python -m tests.engine_service.worker_proc MODEL_DIR REDIS_URL PREFIX CONSUMER DELAY_S
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import redis.asyncio as aioredis

from engine.keys import EngineKeys
from engine.worker import EngineWorker
from tests.engine_service.tiny import slow_down, tiny_engine


async def main(model_dir: str, url: str, prefix: str, consumer: str, delay_s: float) -> None:
    engine = tiny_engine(Path(model_dir))
    slow_down(engine, delay_s)
    client = aioredis.from_url(url, decode_responses=True)
    worker = EngineWorker(client, engine, EngineKeys(prefix), consumer=consumer,
                          claim_idle_ms=1000, block_ms=200)
    print("ready", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
