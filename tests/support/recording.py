"""What a store is asked: the statements a call sends through ``store.fetch``, for plan checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


async def statements_sent(store: Any, call: Callable[[], Awaitable[Any]]) -> tuple[Any, list[tuple[str, tuple]]]:
    """Run ``call()`` and return its result with every ``(sql, args)`` it sent through ``store.fetch``."""
    sent: list[tuple[str, tuple]] = []
    original = store.fetch

    async def recording(sql: str, *args: Any) -> Any:
        sent.append((sql, args))
        return await original(sql, *args)

    store.fetch = recording
    try:
        return await call(), sent
    finally:
        store.fetch = original
