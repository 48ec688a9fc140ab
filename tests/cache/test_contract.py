"""One behaviour for every cache backend: memory:// and redis:// (parametrized).

What the JWKS cache, the replay cache and the rate limiter rely on, whichever
backend serves them. Rate-limit tests count allowed and refused requests;
none asserts how fast anything ran.
"""

from __future__ import annotations

import asyncio

import pytest

from app.cache import Cache
from tests.cache.conftest import MakeCache
from tests.cache.helpers import eventually

SLOW = 0.001  # tokens per second: no refill can happen during a test


async def allowed(cache: Cache, key: str, rate: float, burst: int, calls: int) -> int:
    """How many of ``calls`` back-to-back requests the limiter allows."""
    waits = [await cache.rate_limit(key, rate, burst) for _ in range(calls)]
    assert all(w >= 0 for w in waits)
    return sum(1 for w in waits if w == 0.0)


async def test_backend_satisfies_cache_protocol(make_cache: MakeCache) -> None:
    """Every backend is usable wherever Baton expects a ``Cache``."""
    assert isinstance(make_cache(), Cache)


@pytest.mark.parametrize("value", [b"v", b"", b"\x00\xff" * 100, b"{\"keys\": []}"])
async def test_set_then_get_returns_the_same_bytes(make_cache: MakeCache, value: bytes) -> None:
    """A stored value comes back byte for byte; an empty value is a value, not a miss."""
    cache = make_cache()
    await cache.set("doc", value, 60)
    assert await cache.get("doc") == value


async def test_get_of_unknown_key_is_none(make_cache: MakeCache) -> None:
    """A key never stored is a miss."""
    assert await make_cache().get("never-set") is None


async def test_set_overwrites(make_cache: MakeCache) -> None:
    """The latest set wins (a refreshed JWKS replaces the old one)."""
    cache = make_cache()
    await cache.set("jwks", b"old", 60)
    await cache.set("jwks", b"new", 60)
    assert await cache.get("jwks") == b"new"


async def test_values_expire_after_their_ttl(make_cache: MakeCache) -> None:
    """A short-lived value disappears by itself; a long-lived one stays."""
    cache = make_cache()
    await cache.set("short", b"x", 0.05)
    await cache.set("long", b"y", 60)
    assert await eventually(lambda: _missing(cache, "short"))
    assert await cache.get("long") == b"y"


async def _missing(cache: Cache, key: str) -> bool:
    return await cache.get(key) is None


async def test_add_creates_only_once(make_cache: MakeCache) -> None:
    """add is SET NX: only the first call for a key (e.g. an assertion jti) succeeds."""
    cache = make_cache()
    assert await cache.add("jti:abc", 60) is True
    assert await cache.add("jti:abc", 60) is False
    assert await cache.add("jti:other", 60) is True


async def test_concurrent_adds_have_one_winner(make_cache: MakeCache) -> None:
    """Of many simultaneous adds of one key, exactly one wins (single flight)."""
    cache = make_cache()
    results = await asyncio.gather(*(cache.add("flight", 60) for _ in range(20)))
    assert results.count(True) == 1


async def test_add_marker_expires(make_cache: MakeCache) -> None:
    """After its TTL the key can be added again (an expired assertion's jti is forgotten)."""
    cache = make_cache()
    assert await cache.add("jti:short", 0.05)
    assert await eventually(lambda: cache.add("jti:short", 60))


@pytest.mark.parametrize("burst", [1, 3, 10])
async def test_rate_limit_allows_burst_then_refuses(make_cache: MakeCache, burst: int) -> None:
    """Back-to-back requests: exactly ``burst`` pass, the rest get a positive wait."""
    cache = make_cache()
    waits = [await cache.rate_limit("client:a", SLOW, burst) for _ in range(burst + 5)]
    assert waits[:burst] == [0.0] * burst
    assert all(w > 0 for w in waits[burst:])
    assert max(waits) <= burst / SLOW + 1


async def test_burst_zero_behaves_as_one(make_cache: MakeCache) -> None:
    """A configured burst of 0 still lets one request through (as burst 1)."""
    assert await allowed(make_cache(), "client:z", SLOW, 0, 5) == 1


async def test_rate_limit_refills_at_rate(make_cache: MakeCache) -> None:
    """After the announced wait one more request passes, then the bucket is empty again."""
    cache = make_cache()
    rate = 2.0
    assert await allowed(cache, "client:r", rate, 2, 2) == 2
    wait = await cache.rate_limit("client:r", rate, 2)
    assert 0 < wait <= 1 / rate + 0.01
    await asyncio.sleep(wait + 0.02)
    assert await cache.rate_limit("client:r", rate, 2) == 0.0
    assert await cache.rate_limit("client:r", rate, 2) > 0


async def test_zero_rate_means_unlimited(make_cache: MakeCache) -> None:
    """A client without a configured rate is never limited."""
    assert await allowed(make_cache(), "client:free", 0.0, 0, 50) == 50


async def test_rate_limit_buckets_are_independent(make_cache: MakeCache) -> None:
    """Exhausting one client's bucket leaves another client's alone."""
    cache = make_cache()
    assert await allowed(cache, "client:a", SLOW, 2, 5) == 2
    assert await allowed(cache, "client:b", SLOW, 2, 5) == 2


async def test_rate_limit_and_values_do_not_collide(make_cache: MakeCache) -> None:
    """A bucket and a value under the same name do not disturb each other."""
    cache = make_cache()
    await cache.set("same", b"value", 60)
    assert await allowed(cache, "same", SLOW, 1, 3) == 1
    assert await cache.get("same") == b"value"


async def test_prefixes_isolate_deployments(make_cache: MakeCache, key_prefix: str) -> None:
    """Two caches with different prefixes share no values, markers or buckets."""
    one = make_cache(prefix=f"{key_prefix}one:")
    two = make_cache(prefix=f"{key_prefix}two:")
    await one.set("doc", b"1", 60)
    assert await two.get("doc") is None
    assert await one.add("jti", 60)
    assert await two.add("jti", 60)
    assert await allowed(one, "client", SLOW, 1, 3) == 1
    assert await allowed(two, "client", SLOW, 1, 3) == 1


async def test_ping_is_true_when_reachable(make_cache: MakeCache) -> None:
    """A healthy backend answers ping (what /readyz reports)."""
    assert await make_cache().ping() is True


async def test_rate_limit_all_is_all_or_nothing(make_cache: MakeCache) -> None:
    """Several buckets in one call: refused if any bucket is empty, and then none is charged."""
    cache = make_cache()
    wide, narrow = ("wide", 1.0, 10), ("narrow", 1.0, 1)
    assert await cache.rate_limit_all([wide, narrow]) == 0.0
    assert await cache.rate_limit_all([wide, narrow]) > 0  # narrow is empty
    # the refused call took nothing from wide: it still has 9 of its 10
    allowed = 0
    for _ in range(12):
        if await cache.rate_limit_all([wide]) == 0.0:
            allowed += 1
    assert allowed == 9


async def test_rate_limit_all_skips_unlimited_buckets(make_cache: MakeCache) -> None:
    """A bucket with rate 0 is unlimited and never refuses."""
    cache = make_cache()
    for _ in range(5):
        assert await cache.rate_limit_all([("free", 0.0, 0)]) == 0.0
