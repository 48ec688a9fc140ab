"""The cache seam: issuer documents and keys, rate limits, replay protection.

:class:`Cache` is what the rest of Baton talks to; :class:`MemoryCache` is the
embedded, single-instance backend (``memory://``). A Redis backend shares the
same behaviour across instances. All methods are coroutines so the backends
are interchangeable; none of them may block or hang.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Cache(Protocol):
    """What Baton needs from a cache backend."""

    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None when absent or expired."""

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""

    async def add(self, key: str, ttl: float) -> bool:
        """Create ``key`` only if absent (SET NX); True when this call created it."""

    async def rate_limit(self, key: str, rate: float, burst: int) -> float:
        """Take one token from ``key``'s bucket; 0.0 if allowed, else seconds until retry."""

    async def rate_limit_all(self, buckets: Sequence[tuple[str, float, int]]) -> float:
        """Take one token from each (key, rate, burst) bucket only if all allow; else seconds until retry."""

    async def ping(self) -> bool:
        """True when the backend is reachable."""

    async def close(self) -> None:
        """Release connections."""


class MemoryCache:
    """In-process cache with TTLs, an LRU bound and a GCRA rate limiter."""

    def __init__(self, max_entries: int = 100_000, clock=time.monotonic) -> None:
        self._values: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._tat: dict[str, float] = {}
        self._max = max_entries
        self._clock = clock

    async def get(self, key: str) -> bytes | None:
        item = self._values.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self._clock():
            del self._values[key]
            return None
        self._values.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._values[key] = (self._clock() + ttl, value)
        self._values.move_to_end(key)
        while len(self._values) > self._max:
            self._values.popitem(last=False)

    async def add(self, key: str, ttl: float) -> bool:
        if await self.get(key) is not None:
            return False
        await self.set(key, b"1", ttl)
        return True

    async def rate_limit(self, key: str, rate: float, burst: int) -> float:
        return gcra_all(self._tat, [(key, rate, burst)], self._clock())

    async def rate_limit_all(self, buckets: Sequence[tuple[str, float, int]]) -> float:
        return gcra_all(self._tat, buckets, self._clock())

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._values.clear()


def gcra(state: dict[str, float], key: str, rate: float, burst: int, now: float) -> float:
    """Generic cell rate algorithm on one bucket (see :func:`gcra_all`)."""
    return gcra_all(state, [(key, rate, burst)], now)


def gcra_all(state: dict[str, float], buckets: Sequence[tuple[str, float, int]], now: float) -> float:
    """Generic cell rate algorithm: each bucket allows ``burst`` at once, then ``rate`` per second.

    A request passes only if every bucket allows it, and only then takes a token
    from each. Returns 0.0 when allowed, else the seconds to wait. A rate of 0
    means unlimited.
    """
    wait = 0.0
    pending: list[tuple[str, float]] = []
    for key, rate, burst in buckets:
        if rate <= 0:
            continue
        interval = 1.0 / rate
        tolerance = interval * max(burst - 1, 0)
        tat = max(state.get(key, now), now)
        wait = max(wait, tat - tolerance - now)
        pending.append((key, tat + interval))
    if wait > 0:
        return max(wait, 1e-3)
    for key, tat in pending:
        state[key] = tat
    if len(state) > 200_000:  # bound memory: forget buckets that are full again
        for k in [k for k, v in state.items() if v <= now][:100_000]:
            del state[k]
    return 0.0


def retry_after_seconds(wait: float) -> int:
    """Whole seconds for a ``Retry-After`` header (at least 1)."""
    return max(1, math.ceil(wait))
