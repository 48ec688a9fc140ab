"""Open the cache backend named by ``[cache] url``: ``memory://`` or ``redis(s)://``."""

from __future__ import annotations

from urllib.parse import urlsplit

from app.cache import Cache, MemoryCache
from app.cache_redis import RedisCache
from app.config import CacheConfig

__all__ = ["open_cache"]


def open_cache(config: CacheConfig) -> Cache:
    """The backend for ``config.url``; ValueError naming the scheme for anything else.

    The URL may carry credentials, so errors name only its scheme.
    """
    scheme = urlsplit(config.url).scheme.lower()
    if scheme == "memory":
        return MemoryCache()
    if scheme in ("redis", "rediss"):
        return RedisCache(
            config.url,
            prefix=config.prefix,
            timeout=config.redis_timeout,
            rate_limit_policy=config.rate_limit_policy,
        )
    raise ValueError(
        f"cache.url: unsupported scheme {scheme!r} (use memory://, redis:// or rediss://)"
    )
