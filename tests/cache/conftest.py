"""Fixtures for the cache suite: one factory over the memory and Redis backends.

``make_cache(prefix=None, **options)`` opens a backend (Redis caches get the
test's unique key prefix unless told otherwise); every cache it opened is
closed and every Redis key under the test's prefix deleted afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from app.cache import Cache, MemoryCache
from app.cache_redis import RedisCache

MakeCache = Callable[..., Cache]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """The backend name and its URL; the Redis leg fails under CI when Redis is unreachable."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return "memory", None


async def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key a test created under its prefix."""
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def make_cache(backend: tuple[str, str | None], key_prefix: str) -> AsyncIterator[MakeCache]:
    """A factory of caches of the parametrized backend."""
    name, url = backend
    opened: list[Cache] = []

    def make(prefix: str | None = None, **options: object) -> Cache:
        if name == "memory":
            cache: Cache = MemoryCache()
        else:
            assert url is not None
            cache = RedisCache(url, prefix=prefix or key_prefix, **options)  # type: ignore[arg-type]
        opened.append(cache)
        return cache

    yield make
    for cache in opened:
        await cache.close()
    if url is not None:
        await delete_prefix(url, key_prefix)


OpenRedis = Callable[..., RedisCache]


@pytest.fixture
async def open_redis() -> AsyncIterator[OpenRedis]:
    """``open_redis(url, **options)``: a RedisCache closed after the test (no server needed)."""
    opened: list[RedisCache] = []

    def make(url: str, **options: object) -> RedisCache:
        cache = RedisCache(url, **options)  # type: ignore[arg-type]
        opened.append(cache)
        return cache

    yield make
    for cache in opened:
        await cache.close()


@pytest.fixture
async def make_redis_cache(
    open_redis: OpenRedis, redis_url: str, key_prefix: str
) -> AsyncIterator[Callable[..., RedisCache]]:
    """A factory of RedisCache instances on the test Redis ("Baton instances" sharing it)."""

    def make(**options: object) -> RedisCache:
        options.setdefault("prefix", key_prefix)
        return open_redis(redis_url, **options)

    yield make
    await delete_prefix(redis_url, key_prefix)
