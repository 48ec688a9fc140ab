"""Errors a caller of the event store can act on (shaped like PEP 249's)."""

from __future__ import annotations


class StoreError(Exception):
    """Base of all event store errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or the transaction failed; nothing was written. Retry later."""


class ConcurrencyError(StoreError):
    """The stream's version is not the expected one; re-read and retry."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r}: expected version {expected}, found {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class AppendRefused(StoreError):
    """An inline projection found the append's condition false under the write lock; nothing was written.

    ``reason`` is the projection's word for why (e.g. ``subject_revoked``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"append refused: {reason}")
        self.reason = reason


class IntegrityError(StoreError):
    """The stored log is not what it claims to be (hash chain or checkpoint mismatch)."""


class InvalidEvent(StoreError, ValueError):
    """An event cannot be stored faithfully (its canonical bytes do not decode back to it).

    Raised for that caller only, before the event joins a group-commit batch.
    """
