"""Concurrent rate-limit calls (and replay markers) of one instance share one Redis round trip, and judge as if made one by one."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cache import MemoryCache
from app.cache_redis import MAX_BATCH_KEYS, RedisCache

pytestmark = pytest.mark.redis
MakeRedis = Callable[..., RedisCache]
SLOW = 0.001  # tokens per second: no refill can happen during a test
_prefixes = itertools.count()


async def test_concurrent_calls_share_one_round_trip(make_redis_cache: MakeRedis) -> None:
    """Forty concurrent exchanges of one client: one script run answers them all, and exactly the burst passes."""
    cache = make_redis_cache()
    await cache.rate_limit("c:warm-up", SLOW, 5)  # the script is cached in Redis from now on
    before = cache.calls
    waits = await asyncio.gather(*(cache.rate_limit_all([("c:a", SLOW, 5), (f"s:a:{i % 4}", SLOW, 100)]) for i in range(40)))
    assert cache.calls - before == 1
    assert list(waits).count(0.0) == 5
    assert all(w > 0 for w in waits[5:])  # judged in call order: the first five took the burst


async def test_a_call_alone_is_not_delayed_for_a_batch(make_redis_cache: MakeRedis) -> None:
    """An idle instance sends a lone call at once: one round trip per call, each answered before the next."""
    cache = make_redis_cache()
    before = cache.calls
    for _ in range(3):
        assert await asyncio.wait_for(cache.rate_limit("c:idle", SLOW, 10), 1.0) == 0.0
    assert cache.calls - before == 3


async def test_calls_made_while_a_run_is_in_flight_form_the_next_batch(make_redis_cache: MakeRedis) -> None:
    """Requests arriving during a round trip are not lost or reordered: they go in the next script run."""
    cache = make_redis_cache()
    first = [asyncio.ensure_future(cache.rate_limit("c:waves", SLOW, 6)) for _ in range(4)]
    await asyncio.sleep(0)  # the first batch is on its way
    second = [asyncio.ensure_future(cache.rate_limit("c:waves", SLOW, 6)) for _ in range(4)]
    waits = await asyncio.gather(*first, *second)
    assert list(waits[:4]) == [0.0] * 4
    assert list(waits[4:]).count(0.0) == 2


async def test_a_batch_larger_than_one_script_run_is_split(make_redis_cache: MakeRedis) -> None:
    """More keys than one run may carry: several runs, the same verdicts."""
    cache = make_redis_cache()
    count = MAX_BATCH_KEYS  # two keys each: two runs at least
    waits = await asyncio.gather(*(cache.rate_limit_all([("c:big", SLOW, 10), (f"s:{i}", SLOW, 1)]) for i in range(count)))
    assert list(waits).count(0.0) == 10
    assert cache.calls >= 2


request_strategy = st.lists(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4), min_size=1, max_size=30
)
burst_strategy = st.fixed_dictionaries({k: st.integers(min_value=1, max_value=4) for k in "abcd"})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=request_strategy, bursts=burst_strategy)
async def test_a_batch_judges_like_the_same_calls_one_after_another(
    make_redis_cache: MakeRedis, key_prefix: str, requests: list[list[str]], bursts: dict[str, int]
) -> None:
    """Property: whatever mix of buckets concurrent requests name, the batched verdicts equal sequential GCRA."""
    cache = make_redis_cache(prefix=f"{key_prefix}{next(_prefixes)}:")  # fresh buckets per example
    buckets = [[(key, SLOW, bursts[key]) for key in names] for names in requests]
    batched = await asyncio.gather(*(cache.rate_limit_all(b) for b in buckets))
    reference = MemoryCache()
    sequential = [await reference.rate_limit_all(b) for b in buckets]
    assert [w == 0.0 for w in batched] == [w == 0.0 for w in sequential]


async def test_a_judging_task_lost_before_it_ran_wedges_nothing(make_redis_cache: MakeRedis) -> None:
    """If the task that runs the script dies before starting, its callers fall back within the timeout
    and the next call starts a new one that reaches Redis."""
    cache = make_redis_cache(timeout=0.3)
    caller = asyncio.ensure_future(cache.rate_limit("c:lost", SLOW, 5))
    await asyncio.sleep(0)  # the caller queued its request and created the judging task
    assert cache._limits.task is not None
    cache._limits.task.cancel()  # never gets to run its body
    assert await asyncio.wait_for(caller, 2) == 0.0  # answered by the in-process fallback
    before = cache.calls
    assert await asyncio.wait_for(cache.rate_limit("c:next", SLOW, 5), 2) == 0.0
    assert cache.calls == before + 1


async def test_close_settles_queued_calls(make_redis_cache: MakeRedis) -> None:
    """Closing the cache with calls queued answers them (fallback) instead of leaving them waiting."""
    cache = make_redis_cache()
    callers = [asyncio.ensure_future(cache.rate_limit("c:closing", SLOW, 5)) for _ in range(5)]
    await asyncio.sleep(0)
    await cache.close()
    waits = await asyncio.wait_for(asyncio.gather(*callers), 2)
    assert len(waits) == 5


async def test_concurrent_markers_share_one_round_trip_with_one_winner_per_key(make_redis_cache: MakeRedis) -> None:
    """Thirty concurrent ``add`` calls over ten keys: one script run, exactly the first caller of each key wins."""
    cache = make_redis_cache()
    await cache.add("jti:warm-up", 60)  # the script is cached in Redis from now on (else EVAL counts as a second call)
    before = cache.calls
    created = await asyncio.gather(*(cache.add(f"jti:{i % 10}", 60) for i in range(30)))
    assert cache.calls - before == 1
    assert list(created) == [True] * 10 + [False] * 20
    assert await cache.add("jti:3", 60) is False  # and the markers stay set


async def test_markers_of_other_instances_are_seen(make_redis_cache: MakeRedis, key_prefix: str) -> None:
    """A marker set through one instance's batch refuses the same key on another instance (Redis is the judge)."""
    one, two = make_redis_cache(prefix=key_prefix), make_redis_cache(prefix=key_prefix)
    first = await asyncio.gather(*(one.add(f"shared:{i}", 60) for i in range(5)))
    second = await asyncio.gather(*(two.add(f"shared:{i}", 60) for i in range(6)))
    assert list(first) == [True] * 5
    assert list(second) == [False] * 5 + [True]


async def test_markers_and_rate_limits_in_flight_at_once_keep_their_own_results(make_redis_cache: MakeRedis) -> None:
    """Markers and buckets queued in the same loop turn each get their own script's answer."""
    cache = make_redis_cache()
    results = await asyncio.gather(
        *(cache.add(f"mixed:{i % 3}", 60) for i in range(6)),
        *(cache.rate_limit("c:mixed", SLOW, 2) for _ in range(4)),
    )
    assert list(results[:6]) == [True, True, True, False, False, False]
    assert [w == 0.0 for w in results[6:]] == [True, True, False, False]


async def test_a_marker_batch_larger_than_one_script_run_is_split(make_redis_cache: MakeRedis) -> None:
    """More markers than one run carries: several runs, every marker set once."""
    cache = make_redis_cache()
    count = MAX_BATCH_KEYS + 10
    created = await asyncio.gather(*(cache.add(f"many:{i}", 60) for i in range(count)))
    assert all(created)
    assert cache.calls >= 2
    again = await asyncio.gather(*(cache.add(f"many:{i}", 60) for i in range(0, count, 50)))
    assert not any(again)


async def test_a_bucket_named_by_many_calls_of_a_run_is_sent_once(make_redis_cache: MakeRedis, monkeypatch) -> None:
    """Eight requests of one client share its bucket: the run names it once among its KEYS, and all the numbers
    travel as one argument; the verdicts are still per request."""
    cache = make_redis_cache()
    sent: list[tuple[list[str], str]] = []
    original = cache._eval

    async def recording(script, keys, argv):
        sent.append((list(keys), argv))
        return await original(script, keys, argv)

    monkeypatch.setattr(cache, "_eval", recording)
    waits = await asyncio.gather(*(cache.rate_limit_all([("c:one", SLOW, 5), (f"s:{i}", SLOW, 1)]) for i in range(8)))
    assert [w == 0.0 for w in waits] == [True] * 5 + [False] * 3  # the client's burst of 5, then refused
    (keys, argv), = sent
    assert len(keys) == len(set(keys)) == 9 and isinstance(argv, str)
