"""Engine metrics in Prometheus form, each engine with its own registry (no process globals,
so several engines or tests in one process never collide)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("engine_queue_depth", "requests waiting for a KV slot",
                                 registry=r)
        self.running = Gauge("engine_running_batch_size", "sequences in the running batch",
                             registry=r)
        self.kv_slots_free = Gauge("engine_kv_slots_free", "free KV-cache sequence slots",
                                   registry=r)
        self.generated = Counter("engine_generated_tokens", "tokens generated", registry=r)
        self.prompt_tokens = Counter("engine_prompt_tokens", "prompt tokens computed "
                                     "(excluding those reused from the prefix cache)", registry=r)
        self.tokens_per_s = Gauge("engine_tokens_per_second",
                                  "generated tokens per second over the last few seconds",
                                  registry=r)
        self.ttft = Histogram("engine_time_to_first_token_seconds",
                              "submit to first generated token", buckets=_TTFT_BUCKETS,
                              registry=r)
        self.requests = Counter("engine_requests", "finished requests by reason",
                                ["finish_reason"], registry=r)
        self.rejected = Counter("engine_rejected", "requests refused because the queue was full",
                                registry=r)
        self.prefix_lookups = Counter("engine_prefix_cache_lookups", "prefix-cache lookups",
                                      registry=r)
        self.prefix_hits = Counter("engine_prefix_cache_hits", "lookups that reused a prefix",
                                   registry=r)
        self.prefix_hit_rate = Gauge("engine_prefix_cache_hit_rate",
                                     "share of prompt tokens served from the prefix cache",
                                     registry=r)
        self.embed_batches = Counter("engine_embedding_batches", "embedding forward passes",
                                     registry=r)
        self.embed_texts = Counter("engine_embedding_texts", "texts embedded", registry=r)
        self._window_start = time.monotonic()
        self._window_tokens = 0

    def count_tokens(self, n: int, now: float) -> None:
        """Generated tokens; the tokens/s gauge is refreshed about once a second."""
        self.generated.inc(n)
        self._window_tokens += n
        elapsed = now - self._window_start
        if elapsed >= 1.0:
            self.tokens_per_s.set(self._window_tokens / elapsed)
            self._window_start, self._window_tokens = now, 0

    def idle(self, now: float) -> None:
        if now - self._window_start >= 1.0:
            self.tokens_per_s.set(0.0)
            self._window_start, self._window_tokens = now, 0

    def summary(self) -> dict[str, str]:
        """A few current figures in words, for an admin's status line."""
        def value(name: str) -> float:
            return self.registry.get_sample_value(name) or 0.0

        return {"queue": f"{value('engine_queue_depth'):.0f} waiting",
                "running": f"{value('engine_running_batch_size'):.0f} sequences",
                "throughput": f"{value('engine_tokens_per_second'):.1f} tok/s",
                "prefix cache hit rate": f"{value('engine_prefix_cache_hit_rate'):.0%}"}

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
