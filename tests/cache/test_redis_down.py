"""Redis down: every call returns within the timeout and is answered in-process (docs/redis.md).

No Redis server is needed: the caches point at a closed port or at a TCP
server that accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.cache_redis import FAIL_CLOSED_WAIT, RedisCache
from tests.cache.conftest import OpenRedis
from tests.cache.helpers import free_port, silent_server

SLOW = 0.001
CLOSED = f"redis://127.0.0.1:{free_port()}/0"
NEVER_HANGS = 5.0  # generous bound: a hung call is a failure, not a slow one

MakeDown = Callable[..., RedisCache]


@pytest.fixture
def make_down(open_redis: OpenRedis) -> MakeDown:
    """A factory of RedisCache instances pointing at a port where nothing listens."""

    def make(url: str = CLOSED, **options: object) -> RedisCache:
        options.setdefault("timeout", 0.2)
        return open_redis(url, **options)

    return make


async def test_not_degraded_before_any_call(make_down: MakeDown) -> None:
    """Opening the cache does not connect; nothing is reported until a call fails."""
    cache = make_down()
    assert (cache.degraded, cache.last_error, cache.errors) == (False, None, 0)


async def test_values_fall_back_to_this_instance(make_down: MakeDown) -> None:
    """get misses, set stores in-process, and get then serves the in-process value."""
    cache = make_down()
    assert await cache.get("jwks") is None
    await cache.set("jwks", b"keys", 60)
    assert await cache.get("jwks") == b"keys"
    assert cache.degraded
    assert cache.last_error is not None and "ConnectionError" in cache.last_error
    assert cache.errors >= 1


async def test_replay_protection_falls_back_to_this_instance(make_down: MakeDown) -> None:
    """A jti is still accepted once per instance; another instance does not know it."""
    first, second = make_down(), make_down()
    assert await first.add("jti:x", 60) is True
    assert await first.add("jti:x", 60) is False
    assert await second.add("jti:x", 60) is True


async def test_fail_open_local_uses_a_per_instance_limiter(make_down: MakeDown) -> None:
    """fail_open_local: each instance enforces the limit on its own."""
    first, second = make_down(rate_limit_policy="fail_open_local"), make_down()
    waits = [await first.rate_limit("client", SLOW, 2) for _ in range(5)]
    assert waits.count(0.0) == 2
    assert all(w > 0 for w in waits[2:])
    assert await second.rate_limit("client", SLOW, 2) == 0.0


async def test_fail_closed_refuses_every_request(make_down: MakeDown) -> None:
    """fail_closed: every limited request is refused with a positive wait."""
    cache = make_down(rate_limit_policy="fail_closed")
    waits = [await cache.rate_limit("client", 100.0, 50) for _ in range(3)]
    assert waits == [FAIL_CLOSED_WAIT] * 3
    assert FAIL_CLOSED_WAIT > 0


@pytest.mark.parametrize("policy", ["fail_open_local", "fail_closed"])
async def test_unlimited_clients_stay_unlimited(make_down: MakeDown, policy: str) -> None:
    """A client with no rate configured is never refused, whatever the policy."""
    cache = make_down(rate_limit_policy=policy)
    assert await cache.rate_limit("client", 0.0, 0) == 0.0


async def test_ping_is_false_while_down(make_down: MakeDown) -> None:
    """/readyz sees the outage through ping."""
    cache = make_down()
    assert await cache.ping() is False
    assert cache.degraded


async def test_a_hung_redis_never_hangs_a_call(make_down: MakeDown) -> None:
    """A server that accepts and never answers: every method returns (from the fallback)."""
    async with silent_server() as port:
        cache = make_down(f"redis://127.0.0.1:{port}/0", backoff=0.0)
        bounded = lambda aw: asyncio.wait_for(aw, NEVER_HANGS)  # noqa: E731
        assert await bounded(cache.get("k")) is None
        await bounded(cache.set("k", b"v", 60))
        assert await bounded(cache.add("jti", 60)) is True
        assert await bounded(cache.rate_limit("client", SLOW, 1)) == 0.0
        assert await bounded(cache.ping()) is False
        assert cache.degraded and cache.errors == 5
        assert cache.last_error is not None and "Timeout" in cache.last_error


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_after_a_failure_redis_is_skipped_for_the_backoff(make_down: MakeDown) -> None:
    """A dead Redis is not retried on every request: one probe per backoff period."""
    clock = FakeClock()
    cache = make_down(backoff=1.0, clock=clock)
    await cache.get("a")
    assert (cache.calls, cache.errors) == (1, 1)
    for _ in range(10):
        await cache.get("a")
        await cache.rate_limit("client", SLOW, 5)
    assert (cache.calls, cache.errors, cache.fallbacks) == (1, 1, 21)
    clock.now += 1.5
    await cache.get("a")
    assert (cache.calls, cache.errors) == (2, 2)


async def test_ping_probes_during_the_backoff(make_down: MakeDown) -> None:
    """ping always asks Redis, so a readiness probe sees a recovery at once."""
    cache = make_down(backoff=60.0)
    await cache.get("a")
    assert await cache.ping() is False
    assert cache.calls == 2


async def test_a_call_queued_behind_a_hung_run_waits_its_own_timeout_only(make_down: MakeDown) -> None:
    """A call queued while an earlier script run hangs is answered ``timeout`` after it was made, not after
    that run and then its own have both timed out (one deadline per caller, kept by the script's timer)."""
    async with silent_server() as port:
        # 2 s, so that a loaded machine's delays (up to ≈1 s either way) cannot blur own deadline and queued one
        cache = make_down(f"redis://127.0.0.1:{port}/0", timeout=2.0, backoff=0.0)
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(cache.rate_limit("c:first", SLOW, 5))
        await asyncio.sleep(0.05)  # the first call's run is in flight, hung
        started = loop.time()
        assert await asyncio.wait_for(cache.rate_limit("c:queued", SLOW, 5), NEVER_HANGS) == 0.0
        waited = loop.time() - started
        assert 1.9 <= waited < 2.95  # its own 2 s; behind the hung run it would be ~3.95 s
        assert await asyncio.wait_for(first, NEVER_HANGS) == 0.0
        assert cache.fallbacks >= 2
