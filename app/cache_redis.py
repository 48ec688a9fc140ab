"""The Redis cache backend (``redis://`` / ``rediss://``): one cache for several instances.

:class:`RedisCache` implements :class:`app.cache.Cache` over one redis-py
asyncio connection pool. Every call is bounded by ``timeout``; when Redis
fails or is too slow, the call is answered by an in-process
:class:`~app.cache.MemoryCache` instead, the cache reports itself
``degraded``, and Redis is not tried again for ``backoff`` seconds (then one
call probes it). The policy is spelled out in docs/redis.md.

Key layout under the configured prefix: ``{prefix}kv:{key}`` for values and
``add`` markers, ``{prefix}rl:{key}`` for rate-limit buckets.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from app.cache import MemoryCache

__all__ = ["FAIL_CLOSED_WAIT", "GCRA_LUA", "NX_LUA", "RedisCache"]

T = TypeVar("T")
RateLimitPolicy = Literal["fail_open_local", "fail_closed"]

#: seconds to wait that a refused request is told when Redis is down under ``fail_closed``
FAIL_CLOSED_WAIT = 1.0

#: GCRA on the Redis server's clock, in integer microseconds (exact in Lua's doubles), for a batch
#: of requests at once (the concurrent rate-limit calls of one instance share one round trip).
#: Requests are judged in order, each seeing the tokens the earlier ones took; a request passes
#: only if every one of its buckets allows it, and only then takes a token from each. Same
#: semantics as :func:`app.cache.gcra_all` applied request after request (a bucket one request names
#: twice takes one token, as there).
#: KEYS are the batch's buckets, each once. ARGV[1] is one string of integers (one argument, not
#: dozens: redis-py packs each argument in Python): per request its bucket count, then per bucket
#: (index into KEYS, interval, tolerance). Returns each request's wait (µs, 0 when allowed).
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = redis.call('MGET', unpack(KEYS))
local tats, written, order, results = {}, {}, {}, {}
for i = 1, #KEYS do tats[i] = tonumber(stored[i]) or now end
local n = {}
for v in string.gmatch(ARGV[1], '%S+') do
  local number = tonumber(v)
  if number == nil then return redis.error_reply('baton: ARGV holds a non-number') end
  n[#n + 1] = number
end
local a, r = 1, 0
while a <= #n do
  local count = n[a]
  a = a + 1
  r = r + 1
  local wait = 0
  for b = a, a + 3 * (count - 1), 3 do
    local w = math.max(tats[n[b]], now) - n[b + 2] - now
    if w > wait then wait = w end
  end
  if wait > 0 then
    results[r] = math.max(wait, 1000)
  else
    -- from the request's own view of each bucket: a bucket it names twice gives one token
    local taken = {}
    for b = a, a + 3 * (count - 1), 3 do
      taken[n[b]] = math.max(tats[n[b]], now) + n[b + 1]
    end
    for key, tat in pairs(taken) do
      tats[key] = tat
      if not written[key] then
        written[key] = true
        order[#order + 1] = key
      end
    end
    results[r] = 0
  end
  a = a + 3 * count
end
if a ~= #n + 1 then return redis.error_reply('baton: ARGV does not match its counts') end
for _, key in ipairs(order) do
  redis.call('SET', KEYS[key], string.format('%.0f', tats[key]), 'PX', math.ceil((tats[key] - now) / 1000))
end
return results
"""

#: SET NX for a batch of markers (each caller's ``add``): KEYS are the markers, ARGV[1] their TTLs in
#: ms as one string. Returns 1 for each marker this run created, 0 where it existed (so one key
#: named twice in a batch has one winner: the first).
NX_LUA = """
local created, i = {}, 0
for ttl in string.gmatch(ARGV[1], '%S+') do
  i = i + 1
  if redis.call('SET', KEYS[i], '1', 'PX', ttl, 'NX') then created[i] = 1 else created[i] = 0 end
end
if i ~= #KEYS then return redis.error_reply('baton: one TTL per marker') end
return created
"""

#: most keys (bucket or marker) one script run carries (bounds its argument list, Lua's unpack and the time
#: Redis is busy with it); a batch always takes at least one request
MAX_BATCH_KEYS = 512

# Everything a broken, restarting, overloaded or unreachable Redis can raise.
_FAILURES = (RedisError, OSError, TimeoutError)

_log = structlog.get_logger(__name__)


class _Unavailable(Exception):
    """Redis could not answer this call; the caller uses the in-process fallback."""


def _ms(ttl: float) -> int:
    """A TTL in whole milliseconds, at least 1 (Redis refuses PX 0)."""
    return max(1, math.ceil(ttl * 1000))


def _take_batch(queue: list[_Call]) -> tuple[list[_Call], list[_Call]]:
    """The first calls of ``queue`` holding at most :data:`MAX_BATCH_KEYS` keys (at least one), and the rest."""
    size = taken = 0
    for call in queue:
        if taken and size + len(call.keys) > MAX_BATCH_KEYS:
            break
        size += len(call.keys)
        taken += 1
    return queue[:taken], queue[taken:]


class _Call:
    """One caller's keys and arguments waiting for a script run, and the future that gets its result."""

    __slots__ = ("keys", "args", "result", "deadline")

    def __init__(self, keys: list[str], args: list[int], result: asyncio.Future[int], deadline: float) -> None:
        self.keys = keys
        self.args = args
        self.result = result
        self.deadline = deadline  # loop time after which the caller is answered by the fallback

    def settle(self, *, result: int = 0, exc: BaseException | None = None) -> None:
        if self.result.done():
            return
        if exc is not None:
            self.result.set_exception(exc)
        else:
            self.result.set_result(result)


def _gcra_run(batch: Sequence[_Call]) -> tuple[list[str], str]:
    """KEYS and ARGV of one :data:`GCRA_LUA` run: each bucket once, and the requests as one string."""
    index: dict[str, int] = {}
    numbers: list[int] = []
    for call in batch:
        numbers.append(len(call.keys))
        for key, interval, tolerance in zip(call.keys, call.args[::2], call.args[1::2], strict=True):
            numbers += (index.setdefault(key, len(index) + 1), interval, tolerance)
    return list(index), " ".join(map(str, numbers))


def _nx_run(batch: Sequence[_Call]) -> tuple[list[str], str]:
    """KEYS and ARGV of one :data:`NX_LUA` run: every marker in call order, and their TTLs as one string."""
    return [key for call in batch for key in call.keys], " ".join(str(ttl) for call in batch for ttl in call.args)


class _SharedScript:
    """A Lua script whose concurrent calls (of one instance) go to Redis together.

    Calls queue while a run is in flight and all go in the next one, so under load
    one round trip serves many calls and an idle instance sends a lone call at once.
    The script returns one integer per call, in call order.
    """

    __slots__ = ("lua", "sha", "arguments", "queue", "task", "waiting", "timer")

    def __init__(self, lua: str, arguments: Callable[[Sequence[_Call]], tuple[list[str], str]]) -> None:
        self.lua = lua
        self.sha = hashlib.sha1(lua.encode()).hexdigest()
        self.arguments = arguments  # a batch's KEYS and its one ARGV
        self.queue: list[_Call] = []
        self.task: asyncio.Task[None] | None = None
        # every call not yet known settled, oldest first: with one timeout, also earliest deadline first
        self.waiting: deque[_Call] = deque()
        self.timer: asyncio.TimerHandle | None = None  # fires at the oldest waiting call's deadline


class RedisCache:
    """The shared cache: values, NX markers and GCRA buckets in Redis, with a local fallback.

    Attributes for metrics: ``calls`` (Redis round trips attempted), ``errors``
    (round trips that failed or timed out), ``fallbacks`` (calls answered
    in-process), ``last_error`` (the latest failure, for logs and /readyz).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "baton:",
        timeout: float = 0.5,
        backoff: float = 1.0,
        max_connections: int = 64,
        rate_limit_policy: RateLimitPolicy = "fail_open_local",
        local: MemoryCache | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._prefix = prefix
        self._timeout = timeout
        self._backoff = backoff
        self._policy = rate_limit_policy
        self._local = local if local is not None else MemoryCache()
        self._clock = clock
        # One retry without delay: a pooled connection that died with a Redis
        # restart is replaced at once instead of failing the call.
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._redis = Redis(connection_pool=self._pool)
        self._down_until = 0.0
        self._degraded = False
        self.last_error: str | None = None
        self.calls = 0
        self.errors = 0
        self.fallbacks = 0
        self._limits = _SharedScript(GCRA_LUA, _gcra_run)  # rate limits
        self._markers = _SharedScript(NX_LUA, _nx_run)  # add (SET NX)

    @property
    def degraded(self) -> bool:
        """True from a failed Redis call until the next successful one."""
        return self._degraded

    async def get(self, key: str) -> bytes | None:
        """The value under ``key``; while Redis is down, the in-process value (or a miss)."""
        try:
            return await self._run(lambda: self._redis.get(self._kv(key)))
        except _Unavailable:
            return await self._local.get(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds; while Redis is down, in-process only."""
        try:
            await self._run(lambda: self._redis.set(self._kv(key), value, px=_ms(ttl)))
        except _Unavailable:
            await self._local.set(key, value, ttl)

    async def add(self, key: str, ttl: float) -> bool:
        """SET NX with ``ttl``: True for the one caller (across instances) that created ``key``.

        Concurrent calls share one round trip (one script run sets every marker).

        While Redis is down the marker is per-instance; a marker taken locally
        keeps refusing on this instance after Redis returns, until its TTL ends.
        """
        if await self._local.get(key) is not None:
            return False
        try:
            created = await self._shared(self._markers, [self._kv(key)], [_ms(ttl)])
        except _Unavailable:
            return await self._local.add(key, ttl)
        if created:
            # remembered here too: if Redis goes down, this instance still refuses what it saw
            await self._local.add(key, ttl)
        return bool(created)

    async def rate_limit(self, key: str, rate: float, burst: int) -> float:
        """One GCRA step in one round trip; 0.0 if allowed, else seconds to wait."""
        return await self.rate_limit_all([(key, rate, burst)])

    async def rate_limit_all(self, buckets: Sequence[tuple[str, float, int]]) -> float:
        """One GCRA step over every bucket in one round trip; 0.0 if all allow, else seconds to wait.

        While Redis is down: a per-instance limiter (``fail_open_local``) or a
        refusal of :data:`FAIL_CLOSED_WAIT` seconds (``fail_closed``).
        """
        limited = [(key, rate, burst) for key, rate, burst in buckets if rate > 0]
        if not limited:
            return 0.0
        keys: list[str] = []
        args: list[int] = []
        for key, rate, burst in limited:
            interval = max(1, round(1_000_000 / rate))
            keys.append(self._rl(key))
            args += [interval, interval * max(burst - 1, 0)]
        try:
            wait_us = await self._shared(self._limits, keys, args)
        except _Unavailable:
            if self._policy == "fail_closed":
                return FAIL_CLOSED_WAIT
            return await self._local.rate_limit_all(limited)
        return wait_us / 1_000_000

    async def _shared(self, script: _SharedScript, keys: list[str], args: list[int]) -> int:
        """Queue one call for the next run of ``script`` and wait for its result.

        The wait is bounded by ``timeout`` like any Redis call: a result that comes later
        is not waited for (the caller falls back), whatever run it was queued behind.
        One timer per script enforces every caller's deadline (see :meth:`_expire`), not one
        timeout per caller: under load hundreds of calls a second share it.
        """
        if self._clock() < self._down_until:
            self.fallbacks += 1
            raise _Unavailable
        loop = asyncio.get_running_loop()
        call = _Call(keys, args, loop.create_future(), loop.time() + self._timeout)
        script.queue.append(call)
        script.waiting.append(call)
        if script.timer is None:
            script.timer = loop.call_at(call.deadline, self._expire, script, loop)
        if script.task is None or script.task.done():
            script.task = loop.create_task(self._run_queued(script))
        # a call past its deadline (settled by _expire) or cancelled by its caller is done: a run not yet sent leaves it out
        return await call.result

    def _expire(self, script: _SharedScript, loop: asyncio.AbstractEventLoop) -> None:
        """Answer every call of ``script`` past its deadline with :class:`_Unavailable`; re-arm for the next."""
        script.timer = None
        now = loop.time()
        waiting = script.waiting
        while waiting and (waiting[0].result.done() or waiting[0].deadline <= now):
            call = waiting.popleft()
            if not call.result.done():
                self.fallbacks += 1
                call.settle(exc=_Unavailable())
        if waiting:
            script.timer = loop.call_at(waiting[0].deadline, self._expire, script, loop)

    async def _run_queued(self, script: _SharedScript) -> None:
        """Run ``script`` for everything queued, batch after batch, until its queue is empty.

        Only one run is in flight at a time; calls made meanwhile form the next batch.
        Every queued call gets a result or ``_Unavailable``, whatever happens here.
        """
        batch: list[_Call] = []
        try:
            await asyncio.sleep(0)  # let the calls already runnable in this loop turn join
            while script.queue:
                batch, script.queue = _take_batch([c for c in script.queue if not c.result.done()])
                if not batch:
                    continue
                keys, argv = script.arguments(batch)
                try:
                    results = await self._run(lambda: self._eval(script, keys, argv))
                except _Unavailable:
                    for call in batch:
                        call.settle(exc=_Unavailable())
                    continue
                for call, result in zip(batch, results, strict=True):
                    call.settle(result=int(result))
        finally:
            script.task = None
            for call in [*batch, *script.queue]:  # cancelled, or an unexpected error: nobody is left waiting
                call.settle(exc=_Unavailable())
            script.queue = []

    async def ping(self) -> bool:
        """PING Redis now (ignoring the backoff); a success ends the degraded state."""
        try:
            return bool(await self._run(self._redis.ping, probe=True))
        except _Unavailable:
            return False

    async def close(self) -> None:
        """Stop the shared script runs, close every pooled connection and drop the in-process values."""
        for script in (self._limits, self._markers):
            if script.timer is not None:
                script.timer.cancel()
                script.timer = None
            task, script.task = script.task, None
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            # a task cancelled before it started settles nothing: its callers are answered here
            while script.waiting:
                script.waiting.popleft().settle(exc=_Unavailable())
        await self._redis.aclose()
        await self._pool.disconnect()
        await self._local.close()

    def _kv(self, key: str) -> str:
        return f"{self._prefix}kv:{key}"

    def _rl(self, key: str) -> str:
        return f"{self._prefix}rl:{key}"

    async def _eval(self, script: _SharedScript, keys: list[str], argv: str) -> list[int]:
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, argv)
        except NoScriptError:
            # EVAL also caches the script, so the next EVALSHA finds it.
            self.calls += 1
            return await self._redis.eval(script.lua, len(keys), *keys, argv)

    async def _run(self, command: Callable[[], Awaitable[T]], *, probe: bool = False) -> T:
        """Run one Redis command within the timeout, or raise :class:`_Unavailable`."""
        now = self._clock()
        if not probe and now < self._down_until:
            self.fallbacks += 1
            raise _Unavailable
        if self._degraded:
            # This call probes; concurrent calls keep using the fallback meanwhile.
            self._down_until = now + self._backoff
        self.calls += 1
        try:
            async with asyncio.timeout(self._timeout):
                result = await command()
        except _FAILURES as exc:
            self._failed(exc)
            raise _Unavailable from exc
        if self._degraded:
            self._degraded = False
            self._down_until = 0.0
            _log.warning("cache.redis_recovered", errors=self.errors)
        return result

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.fallbacks += 1
        self._down_until = self._clock() + self._backoff
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not self._degraded:
            self._degraded = True
            _log.warning("cache.redis_degraded", error=self.last_error, backoff=self._backoff)
