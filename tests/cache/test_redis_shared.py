"""Several Baton instances on one Redis behave as one: shared limits, values and jti markers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from app.cache_redis import RedisCache

pytestmark = pytest.mark.redis
MakeRedis = Callable[..., RedisCache]
SLOW = 0.001  # tokens per second: no refill can happen during a test


async def test_two_instances_share_one_rate_limit(make_redis_cache: MakeRedis) -> None:
    """Requests spread over two instances get the configured burst in total, not twice it."""
    first, second = make_redis_cache(), make_redis_cache()
    waits = [await (first if i % 2 else second).rate_limit("client:a", SLOW, 5) for i in range(20)]
    assert waits.count(0.0) == 5


async def test_concurrent_requests_over_instances_never_exceed_burst(make_redis_cache: MakeRedis) -> None:
    """The limit is atomic: a concurrent burst across instances lets exactly ``burst`` through."""
    caches = [make_redis_cache() for _ in range(3)]
    waits = await asyncio.gather(*(caches[i % 3].rate_limit("client:c", SLOW, 7) for i in range(60)))
    assert list(waits).count(0.0) == 7


async def test_a_jti_is_accepted_once_across_instances(make_redis_cache: MakeRedis) -> None:
    """A replayed private_key_jwt assertion is refused by whichever instance sees it second."""
    first, second = make_redis_cache(), make_redis_cache()
    assert await first.add("jti:client:abc", 60) is True
    assert await second.add("jti:client:abc", 60) is False
    results = await asyncio.gather(*(c.add("jti:client:race", 60) for c in (first, second) * 10))
    assert results.count(True) == 1


async def test_a_value_set_by_one_instance_is_read_by_another(make_redis_cache: MakeRedis) -> None:
    """Issuer keys fetched by one instance serve the others."""
    first, second = make_redis_cache(), make_redis_cache()
    await first.set("jwks:https://issuer.example", b"{}", 60)
    assert await second.get("jwks:https://issuer.example") == b"{}"


async def test_keys_are_namespaced_and_expire(make_redis_cache: MakeRedis, redis_url: str, key_prefix: str) -> None:
    """Every key lives under the prefix (kv:/rl:) and carries a TTL, so idle buckets vanish."""
    cache = make_redis_cache()
    await cache.set("doc", b"x", 60)
    await cache.add("jti", 60)
    await cache.rate_limit("client", 1.0, 3)  # one interval = 1 s: long enough to observe under load
    raw = Redis.from_url(redis_url)
    try:
        keys = sorted([k.decode() async for k in raw.scan_iter(match=f"{key_prefix}*")])
        assert keys == [f"{key_prefix}kv:doc", f"{key_prefix}kv:jti", f"{key_prefix}rl:client"]
        ttls = [await raw.pttl(k) for k in keys]
        assert all(0 < ttl <= 60_000 for ttl in ttls)
        # a bucket lives only until it would be full again: at most one interval here
        assert ttls[2] <= 1_000
    finally:
        await raw.aclose()


async def test_rate_limit_survives_a_script_cache_flush(make_redis_cache: MakeRedis, redis_url: str) -> None:
    """After SCRIPT FLUSH (or a Redis restart) EVALSHA's NOSCRIPT falls back to EVAL, not to the fallback."""
    cache = make_redis_cache()
    raw = Redis.from_url(redis_url)
    try:
        await raw.script_flush()
    finally:
        await raw.aclose()
    assert await cache.rate_limit("client:f", SLOW, 2) == 0.0
    assert await cache.rate_limit("client:f", SLOW, 2) == 0.0
    assert await cache.rate_limit("client:f", SLOW, 2) > 0
    assert not cache.degraded and cache.errors == 0


async def test_healthy_cache_reports_no_degradation(make_redis_cache: MakeRedis) -> None:
    """With Redis up, nothing is served from the fallback."""
    cache = make_redis_cache()
    await cache.set("k", b"v", 60)
    assert await cache.get("k") == b"v"
    assert await cache.ping()
    assert (cache.degraded, cache.last_error, cache.errors, cache.fallbacks) == (False, None, 0, 0)
