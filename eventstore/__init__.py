"""Baton's append-only, hash-chained event log (SQLite embedded, PostgreSQL in production)."""

from .errors import AppendRefused, ConcurrencyError, IntegrityError, StoreError, StoreUnavailable
from .events import (
    ChainCheckpoint,
    ClientAuthFailed,
    ClientRevoked,
    Event,
    ExchangeDenied,
    SigningKeyRotated,
    SubjectRevoked,
    TokenExchanged,
    TokenRevoked,
    decode_event,
    encode_event,
)
from .store import EventStore, InlineProjection, RecordedEvent, Tx, bigint_seconds, placeholders
from .types import ANY, NO_STREAM, STREAM_EXISTS


def open_store(
    url: str, projections=(), *, max_batch: int = 256, max_wait: float = 0.0, **postgres_options
) -> EventStore:
    """The store backend for ``url`` (``sqlite://…`` or ``postgresql://…``), not yet opened.

    ``postgres_options`` (``migrate``, ``pool_min``, ``pool_max``, ``connect_timeout``,
    ``command_timeout``) apply to PostgreSQL only.
    """
    if url.startswith("sqlite:"):
        from .sqlite import SqliteEventStore

        return SqliteEventStore(url, projections, max_batch=max_batch, max_wait=max_wait)
    if url.startswith(("postgresql:", "postgres:")):
        from .postgres import PostgresEventStore

        return PostgresEventStore(url, projections, max_batch=max_batch, max_wait=max_wait, **postgres_options)
    raise ValueError(f"unsupported store URL scheme: {url.split(':', 1)[0]!r} (use sqlite:// or postgresql://)")


__all__ = [
    "ANY",
    "AppendRefused",
    "ChainCheckpoint",
    "ClientAuthFailed",
    "ClientRevoked",
    "ConcurrencyError",
    "Event",
    "EventStore",
    "ExchangeDenied",
    "InlineProjection",
    "IntegrityError",
    "NO_STREAM",
    "RecordedEvent",
    "STREAM_EXISTS",
    "SigningKeyRotated",
    "StoreError",
    "StoreUnavailable",
    "SubjectRevoked",
    "TokenExchanged",
    "TokenRevoked",
    "Tx",
    "decode_event",
    "encode_event",
    "open_store",
    "bigint_seconds",
    "placeholders",
]
