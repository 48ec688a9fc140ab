"""A Redis that goes away and comes back: the cache degrades, then recovers by itself.

Runs a private redis-server on a free port (started and stopped by the test),
so the shared test Redis is never disturbed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.cache.conftest import OpenRedis
from tests.cache.helpers import RedisServer, eventually, redis_server

pytestmark = pytest.mark.redis
SLOW = 0.001


@pytest.fixture
async def server() -> AsyncIterator[RedisServer]:
    """A private redis-server the test may stop and start; always stopped at the end."""
    async with redis_server() as running:
        yield running


async def test_cache_degrades_and_recovers_without_help(server: RedisServer, open_redis: OpenRedis) -> None:
    """Stop Redis: calls fall back and degraded is set. Start it again: Redis serves again."""
    cache = open_redis(server.url, prefix="t:", timeout=0.3, backoff=0.1)
    await cache.set("doc", b"shared", 60)
    assert await cache.get("doc") == b"shared" and not cache.degraded

    server.stop()
    assert await cache.get("doc") is None
    assert cache.degraded and await cache.ping() is False

    await server.start()

    async def recovered() -> bool:
        await cache.get("probe")
        return not cache.degraded

    assert await eventually(recovered, within=10)
    assert cache.last_error is not None  # the last failure stays visible
    await cache.set("after", b"back", 60)
    assert await cache.rate_limit("client", SLOW, 1) == 0.0
    assert await cache.rate_limit("client", SLOW, 1) > 0
    raw = Redis.from_url(server.url)
    try:
        assert await raw.get("t:kv:after") == b"back"
        assert await raw.exists("t:rl:client")
    finally:
        await raw.aclose()


async def test_ping_reports_recovery(server: RedisServer, open_redis: OpenRedis) -> None:
    """A readiness probe turns healthy as soon as Redis answers again, despite the backoff."""
    cache = open_redis(server.url, prefix="t:", timeout=0.3, backoff=60.0)
    server.stop()
    assert await cache.ping() is False
    await server.start()
    assert await eventually(cache.ping, within=10)
    assert not cache.degraded


async def test_a_jti_taken_during_the_outage_stays_refused_here(server: RedisServer, open_redis: OpenRedis) -> None:
    """Replay protection taken per instance while Redis was down still holds on that instance after."""
    cache = open_redis(server.url, prefix="t:", timeout=0.3, backoff=0.0)
    server.stop()
    assert await cache.add("jti:outage", 60) is True
    await server.start()
    assert await eventually(cache.ping, within=10)
    assert await cache.add("jti:outage", 60) is False
    assert await cache.add("jti:fresh", 60) is True
    assert await cache.add("jti:fresh", 60) is False


async def test_a_quick_redis_restart_costs_no_failed_call(server: RedisServer, open_redis: OpenRedis) -> None:
    """Pooled connections broken by a restart are replaced inside the next call: no fallback."""
    cache = open_redis(server.url, prefix="t:", timeout=0.3)
    await cache.set("before", b"v", 60)
    server.stop()
    await server.start()
    await cache.set("after", b"restart", 60)
    assert await cache.get("after") == b"restart"
    assert (cache.degraded, cache.errors) == (False, 0)
