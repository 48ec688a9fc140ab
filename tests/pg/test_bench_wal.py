"""``baton bench`` reads PostgreSQL's WAL position to report the bytes each exchange makes the server write."""

from __future__ import annotations

import asyncio

import asyncpg

from ops.bench_probe import pg_wal_bytes


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
