"""Counters ``baton bench`` reads around each load run: database transactions and Redis calls.

- PostgreSQL: ``pg_stat_database.xact_commit`` of Baton's database, read over a
  connection to another database (so the probe's own queries do not count).
  Backends publish their counts lazily (at most once a second, and up to ten
  seconds late when idle), so a reading is repeated until it stops moving.
- PostgreSQL WAL: the server's ``pg_current_wal_lsn()`` in bytes, read after the
  commit count has settled. It counts every database of the server: the bytes
  each exchange makes the database write (rows, index entries, commit records),
  a figure that does not drift with the machine's speed.
- SQLite: group-commit transactions are the distinct ``recorded_at`` values of
  the events appended (every event of a batch carries the batch's time), which
  counts every worker process; against a ``--target`` the ``/metrics`` counter
  ``baton_store_batch_size_count`` of whichever worker answers is used.
- Redis round trips: Baton's own count (``baton_redis_calls_total``) per worker
  process, divided by the requests that worker answered on the scenario's
  path. ``/metrics`` is answered by whichever worker takes the connection, so
  it is scraped on fresh connections until every worker has been seen, each
  telling itself apart by ``baton_process_id``. Redis commands (which include
  those the rate-limit script runs inside Redis) come from ``INFO commandstats``,
  without the probe's own ``INFO``.

Before each scenario's measured runs the bench's PostgreSQL database is analyzed
(:func:`pg_analyze`): it was created seconds before and would have no statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx


@contextlib.asynccontextmanager
async def _pg_connection(dsn: str) -> AsyncIterator[Any]:
    """A connection of the probe's own, closed afterwards."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        yield conn
    finally:
        await conn.close()


async def _pg_commits(admin_dsn: str, database: str) -> int:
    async with _pg_connection(admin_dsn) as conn:
        value = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database)
        return int(value or 0)


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


async def _pg_wal_bytes(admin_dsn: str) -> int:
    async with _pg_connection(admin_dsn) as conn:
        return int(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"))


def pg_wal_bytes(admin_dsn: str) -> int:
    """The server's write-ahead log position in bytes: what every database of the server has written so far."""
    return asyncio.run(_pg_wal_bytes(admin_dsn))


async def _pg_analyze(database_url: str) -> None:
    async with _pg_connection(database_url) as conn:
        await conn.execute("ANALYZE")


def pg_analyze(database_url: str) -> None:
    """``ANALYZE`` the bench's database, as autovacuum would have done to one in service.

    The database is created seconds before the run: without statistics PostgreSQL plans
    for empty tables, and a plan a connection caches then (a sequential scan) stays while
    the tables grow. Measured: a classic group commit's server time grew from 1.5 to 5.5 ms
    over 3,200 events; after ANALYZE it was 0.75 ms.
    """
    asyncio.run(_pg_analyze(database_url))


def redis_commandstats(url: str) -> dict[str, int]:
    """Calls per command from ``INFO commandstats``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in info.items()}


def redis_commands(before: dict[str, int], after: dict[str, int]) -> int:
    """Commands Redis ran between two commandstats readings (scripts' inner commands included, INFO not)."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta.pop("info", None)
    return sum(v for v in delta.values() if v > 0)


_PROCESS_ID = re.compile(r"^baton_process_id ([0-9.e+]+)$", re.M)


def worker_metrics(url: str, tries: int = 16) -> dict[int, str]:
    """The ``/metrics`` text of every worker that answered, by process id (one fresh connection per try)."""
    seen: dict[int, str] = {}
    for _ in range(tries):
        try:
            text = httpx.get(url + "/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        match = _PROCESS_ID.search(text)
        if match:
            seen[int(float(match.group(1)))] = text
    return seen


def counter(text: str, name: str, *labels: str) -> float:
    """The sum of ``name``'s samples whose labels include every one of ``labels`` (``key="value"``)."""
    total = 0.0
    for found_labels, value in re.findall(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? ([0-9.e+-]+)$", text, re.M):
        if all(label in found_labels for label in labels):
            total += float(value)
    return total


def per_worker_delta(before: dict[int, str], after: dict[int, str], name: str, *labels: str) -> float:
    """How much ``name`` grew, summed over the workers seen both before and after."""
    return sum(counter(after[pid], name, *labels) - counter(before[pid], name, *labels) for pid in after.keys() & before.keys())


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


def key_cache_hit_rate(before: dict[int, str], after: dict[int, str]) -> float | None:
    """Hits over all issuer key lookups between two readings (every worker seen in both), None without lookups."""
    hits = per_worker_delta(before, after, "baton_key_cache_total", 'kind="issuer"', 'result="hit"')
    lookups = per_worker_delta(before, after, "baton_key_cache_total", 'kind="issuer"')
    return round(hits / lookups, 4) if lookups > 0 else None
