"""open_cache picks the backend from ``[cache] url`` (or BATON_CACHE_URL)."""

from __future__ import annotations

import pytest

from app.cache import MemoryCache
from app.cache_factory import open_cache
from app.cache_redis import RedisCache
from app.config import CacheConfig, load_config


async def test_memory_url_opens_the_embedded_cache() -> None:
    """The default memory:// needs no server."""
    assert isinstance(open_cache(CacheConfig()), MemoryCache)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380/1", "REDIS://h/0"])
async def test_redis_urls_open_the_redis_cache(url: str) -> None:
    """redis:// and rediss:// (TLS) open a RedisCache without connecting yet."""
    cache = open_cache(CacheConfig(url=url, prefix="p:"))
    try:
        assert isinstance(cache, RedisCache)
        assert not cache.degraded
    finally:
        await cache.close()


def test_environment_url_selects_redis() -> None:
    """BATON_CACHE_URL overrides the file and turns Redis on."""
    config = load_config(b'issuer = "https://baton.example"\n', {"BATON_CACHE_URL": "redis://127.0.0.1:6379/0"})
    assert isinstance(open_cache(config.cache), RedisCache)


@pytest.mark.parametrize("url", ["postgresql://user:s3cret@db/x", "memcached://h", "unix:///tmp/r.sock", "127.0.0.1:6379"])
def test_other_schemes_are_refused_by_name(url: str) -> None:
    """An unsupported URL stops start-up naming its scheme, never echoing credentials."""
    with pytest.raises(ValueError, match="unsupported scheme") as info:
        open_cache(CacheConfig(url=url))
    assert "s3cret" not in str(info.value)
