"""Many-row INSERTs on PostgreSQL run as one statement over column arrays, with the same result as row by row."""

from __future__ import annotations

import asyncpg
import pytest

from eventstore.pg_bulk import BulkInserts

pytestmark = pytest.mark.postgres

PLAIN = "INSERT INTO bulk_t (id, name, score, data) VALUES ($1, $2, $3, $4)"
NOTHING = "INSERT INTO bulk_t (id, name, score, data) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING"
UPDATE = "INSERT INTO bulk_t (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = excluded.name"


@pytest.fixture
async def conn(pg_dsn):
    connection = await asyncpg.connect(pg_dsn)
    await connection.execute(
        "CREATE TABLE bulk_t (id bigint PRIMARY KEY, name text, score double precision, data bytea)"
    )
    yield connection
    await connection.close()


async def _rows(conn) -> list[tuple]:
    return [tuple(r) for r in await conn.fetch("SELECT id, name, score, data FROM bulk_t ORDER BY id")]


async def test_plain_and_do_nothing_inserts_become_one_statement(conn) -> None:
    """Rows with NULLs, floats and bytes land exactly as given; a conflicting row is skipped; one rewrite each."""
    bulk = BulkInserts()
    rows = [(1, "a", 1.5, b"\x00\x01"), (2, None, None, None), (3, "c", -0.0, b"")]
    await bulk.executemany(conn, PLAIN, rows)
    await bulk.executemany(conn, NOTHING, [(3, "again", 9.0, b"x"), (4, "d", 2.0, b"y")])
    assert await _rows(conn) == [*rows, (4, "d", 2.0, b"y")]
    assert bulk._rewritten[PLAIN] is not None and "unnest" in bulk._rewritten[PLAIN][0]
    assert bulk._rewritten[NOTHING] is not None


async def test_do_update_stays_row_by_row(conn) -> None:
    """An upsert may touch one key twice in a batch; row-by-row execution keeps the last, as before."""
    bulk = BulkInserts()
    await bulk.executemany(conn, UPDATE, [(7, "first"), (7, "second")])
    assert (await conn.fetchval("SELECT name FROM bulk_t WHERE id = 7")) == "second"
    assert bulk._rewritten.get(UPDATE) is None


async def test_a_failing_bulk_insert_fails_like_the_row_by_row_one(conn) -> None:
    """A duplicate key in a plain INSERT is still a unique violation (nothing half-written inside a transaction)."""
    bulk = BulkInserts()
    async with conn.transaction():
        await bulk.executemany(conn, PLAIN, [(9, "x", 0.0, b"")])
    with pytest.raises(asyncpg.UniqueViolationError):
        async with conn.transaction():
            await bulk.executemany(conn, PLAIN, [(10, "y", 0.0, b""), (9, "dup", 0.0, b"")])
    assert [r[0] for r in await _rows(conn)] == [9]
