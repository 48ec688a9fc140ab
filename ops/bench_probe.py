"""Counters ``baton bench`` reads around each load run: database transactions and Redis calls.

- PostgreSQL: ``pg_stat_database.xact_commit`` of Baton's database, read over a
  connection to another database (so the probe's own queries do not count).
  Backends publish their counts lazily (at most once a second, and up to ten
  seconds late when idle), so a reading is repeated until it stops moving.
- SQLite: group-commit transactions are the distinct ``recorded_at`` values of
  the events appended (every event of a batch carries the batch's time), which
  counts every worker process; against a ``--target`` the ``/metrics`` counter
  ``baton_store_batch_size_count`` of whichever worker answers is used.
- Redis: ``INFO commandstats``. Commands a Lua script runs are counted there
  too, so round trips are the commands minus those issued inside the
  rate-limit script (one ``TIME`` per run, plus one ``GET`` and one ``SET``
  per bucket); the probe's own ``INFO`` is left out.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

import httpx


async def _pg_commits(admin_dsn: str, database: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn, timeout=5)
    try:
        value = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database)
        return int(value or 0)
    finally:
        await conn.close()


def pg_commits(admin_dsn: str, database: str, settle: float = 12.0) -> int:
    """``xact_commit`` of ``database`` once it has stopped changing (at most ``settle`` seconds)."""
    deadline = time.monotonic() + settle
    last = asyncio.run(_pg_commits(admin_dsn, database))
    while time.monotonic() < deadline:
        time.sleep(1.1)
        now = asyncio.run(_pg_commits(admin_dsn, database))
        if now == last:
            return now
        last = now
    return last


def redis_commandstats(url: str) -> dict[str, int]:
    """Calls per command from ``INFO commandstats``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in info.items()}


def redis_delta(before: dict[str, int], after: dict[str, int], buckets: int) -> tuple[int, int]:
    """(commands, round trips) between two commandstats readings; ``buckets`` per rate-limit script run."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta.pop("info", None)
    commands = sum(v for v in delta.values() if v > 0)
    scripts = delta.get("time", 0)
    inner = scripts + min(delta.get("get", 0), scripts * buckets) + min(delta.get("set", 0), scripts * buckets)
    return commands, commands - inner


def sqlite_batches(path: Path, after: int) -> tuple[int, int]:
    """(transactions, head position): distinct batch times of events after position ``after``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        count, head = conn.execute(
            "SELECT COUNT(DISTINCT recorded_at), COALESCE(MAX(position), ?) FROM events WHERE position > ?",
            (after, after),
        ).fetchone()
    finally:
        conn.close()
    return int(count), int(head)


def metrics_batches(url: str) -> int | None:
    """``baton_store_batch_size_count`` from ``/metrics`` (one worker's view), None when absent."""
    try:
        text = httpx.get(url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    match = re.search(r"^baton_store_batch_size_count(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    return int(float(match.group(1))) if match else None


_KEY_CACHE = re.compile(r'^baton_key_cache_total\{([^}]*)\} ([0-9.e+]+)$', re.M)


def metrics_key_cache(url: str) -> tuple[int, int] | None:
    """(hits, lookups) of the issuer key cache from ``/metrics`` (one worker's view), None when absent."""
    try:
        text = httpx.get(url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    hits = lookups = 0
    for labels, value in _KEY_CACHE.findall(text):
        if 'kind="issuer"' not in labels:
            continue
        count = int(float(value))
        lookups += count
        if 'result="hit"' in labels:
            hits += count
    return (hits, lookups) if lookups or "baton_key_cache_total" in text else None
