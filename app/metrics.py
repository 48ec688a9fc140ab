"""Prometheus metrics (prometheus-client), defined once per process."""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

EXCHANGES = Counter(
    "baton_exchanges_total", "Token exchange requests by outcome and denial reason", ["outcome", "reason"]
)
REQUEST_SECONDS = Histogram(
    "baton_request_duration_seconds",
    "HTTP request latency by endpoint",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
APPEND_SECONDS = Histogram(
    "baton_store_batch_seconds",
    "Event store group-commit transaction latency",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
BATCH_SIZE = Histogram(
    "baton_store_batch_size", "Appends per group-commit transaction", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
)
REVOCATIONS = Counter("baton_revocations_total", "Revocation events appended", ["kind"])
RATE_LIMITED = Counter("baton_rate_limited_total", "Requests refused by a rate limit")
STORE_ERRORS = Counter("baton_store_errors_total", "Requests refused because the event store was unavailable")
READY = Gauge("baton_ready", "1 when this instance is ready to serve")
PROCESS_ID = Gauge(
    "baton_process_id", "Process id of the worker that answered this scrape (tells the workers of one instance apart)"
)
PROCESS_ID.set_function(os.getpid)
POSTGRES_ERRORS = Counter(
    "baton_postgres_errors_total", "PostgreSQL failures seen by this instance, by where they surfaced", ["where"]
)
KEY_CACHE = Counter(
    "baton_key_cache_total",
    "JWKS key-cache lookups by owner kind (issuer, client), owner and result (hit, miss, refresh)",
    ["kind", "owner", "result"],
)
KEY_RELOADS = Counter("baton_signing_key_reloads_total", "Key-file reloads by result (ok, failed)", ["result"])
SIGNING_KEYS = Gauge("baton_signing_keys", "Signing keys loaded by lifecycle state", ["state"])
# projection lag: ``baton_projection_lag_events{projection}`` is defined by projections/runner.py


@functools.lru_cache(maxsize=4096)
def labelled(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once: the hot path counts without prometheus-client's lock and checks.

    Label values here come from configuration or fixed sets (endpoints, outcomes, reasons,
    trusted issuers), so the cache stays small; the bound is a safety net.
    """
    return metric.labels(*values)


def note_store_error(store: object, where: str) -> None:
    """Count a store failure as a PostgreSQL error when the store is PostgreSQL."""
    if getattr(store, "dialect", "") == "postgresql":
        POSTGRES_ERRORS.labels(where).inc()


def observe_keys(states: list[str]) -> None:
    """Record how many keys are loaded in each lifecycle state."""
    for state in ("next", "active", "retired"):
        SIGNING_KEYS.labels(state).set(states.count(state))


class _RedisCollector(Collector):
    """Reads the counters of every live Redis cache (``RedisCache.calls/errors/fallbacks``) at scrape time."""

    def __init__(self) -> None:
        self.caches: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        caches = list(self.caches)
        families = (
            ("baton_redis_calls", "Redis round trips attempted", "calls"),
            ("baton_redis_errors", "Redis round trips that failed or timed out", "errors"),
            ("baton_redis_fallbacks", "Cache calls answered in-process because Redis was down", "fallbacks"),
        )
        for name, help_text, attribute in families:
            family = CounterMetricFamily(name, help_text)
            family.add_metric([], sum(getattr(c, attribute, 0) for c in caches))
            yield family
        degraded = GaugeMetricFamily("baton_redis_degraded", "1 while a Redis cache of this process is degraded")
        degraded.add_metric([], 1 if any(getattr(c, "degraded", False) for c in caches) else 0)
        yield degraded


_REDIS = _RedisCollector()
REGISTRY.register(_REDIS)


def watch_cache(cache: object) -> None:
    """Expose a Redis cache's error counters (a no-op for caches without them)."""
    if hasattr(cache, "errors") and hasattr(cache, "calls"):
        _REDIS.caches.add(cache)


def observe_batch(size: int, seconds: float) -> None:
    """Group-commit hook: record one batch."""
    BATCH_SIZE.observe(size)
    APPEND_SECONDS.observe(seconds)


def render() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
