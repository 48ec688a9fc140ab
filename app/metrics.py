"""Prometheus metrics (prometheus-client), defined once per process."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

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


def observe_batch(size: int, seconds: float) -> None:
    """Group-commit hook: record one batch."""
    BATCH_SIZE.observe(size)
    APPEND_SECONDS.observe(seconds)


def render() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
