"""What ``baton bench`` asks PostgreSQL: the WAL position (the bytes each exchange makes the server write), and
statistics for its freshly made database before it measures."""

from __future__ import annotations

import asyncio

import asyncpg

from ops.bench_probe import pg_analyze, pg_wal_bytes


def test_wal_position_grows_by_what_a_commit_writes(pg_dsn: str) -> None:
    """A committed 64 kB row moves the WAL position by at least that much."""

    async def write_row() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS wal_probe (data bytea)")
            await conn.execute("ALTER TABLE wal_probe ALTER COLUMN data SET STORAGE EXTERNAL")  # no compression
            await conn.execute("INSERT INTO wal_probe VALUES ($1)", bytes(range(256)) * 256)
        finally:
            await conn.close()

    start = pg_wal_bytes(pg_dsn)
    asyncio.run(write_row())
    written = pg_wal_bytes(pg_dsn) - start
    assert written >= 64 * 1024


def test_the_bench_gives_its_database_statistics_before_measuring(pg_dsn: str) -> None:
    """``pg_analyze``: a table filled seconds ago has statistics afterwards, as autovacuum would have given it."""

    async def fill() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("CREATE TABLE stats_probe (id bigint PRIMARY KEY)")
            await conn.execute("INSERT INTO stats_probe SELECT generate_series(1, 1000)")
        finally:
            await conn.close()

    async def estimated_rows() -> float:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return float(await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'stats_probe'::regclass"))
        finally:
            await conn.close()

    asyncio.run(fill())
    assert asyncio.run(estimated_rows()) < 0  # never analyzed
    pg_analyze(pg_dsn)
    assert asyncio.run(estimated_rows()) == 1000
