"""Many-row INSERTs on PostgreSQL run as one statement over column arrays, with the same result as row by row."""

from __future__ import annotations

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import TokenRevoked
from eventstore.pg_bulk import BulkInserts
from eventstore.postgres import PostgresEventStore

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


class RecordingConnection:
    """Passes statements to a connection and records which ran, and how."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.calls: list[tuple[str, str]] = []

    async def fetch(self, sql: str, *args):
        return await self._conn.fetch(sql, *args)

    async def execute(self, sql: str, *args):
        self.calls.append(("execute", sql))
        return await self._conn.execute(sql, *args)

    async def executemany(self, sql: str, rows):
        self.calls.append(("executemany", sql))
        return await self._conn.executemany(sql, rows)


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


async def test_an_upsert_touching_one_key_twice_goes_row_by_row(conn) -> None:
    """One statement may not update a row twice: rows repeating a key are executed one by one, the last wins."""
    bulk = BulkInserts()
    recording = RecordingConnection(conn)
    await bulk.executemany(recording, UPDATE, [(7, "first"), (8, "other"), (7, "second")])
    assert recording.calls == [("executemany", UPDATE)]
    assert (await conn.fetchval("SELECT name FROM bulk_t WHERE id = 7")) == "second"
    assert (await conn.fetchval("SELECT name FROM bulk_t WHERE id = 8")) == "other"


async def test_an_upsert_with_distinct_keys_is_one_statement(conn) -> None:
    """Distinct conflict keys: inserted and updated rows in one execution, with the DO UPDATE's WHERE applied."""
    guarded = (
        "INSERT INTO bulk_t (id, name, score) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
        "name = excluded.name, score = bulk_t.score + excluded.score WHERE bulk_t.score < excluded.score"
    )
    await conn.execute("INSERT INTO bulk_t (id, name, score) VALUES (1, 'old', 1.0), (2, 'kept', 5.0)")
    bulk = BulkInserts()
    recording = RecordingConnection(conn)
    await bulk.executemany(recording, guarded, [(1, "new", 2.0), (2, "ignored", 3.0), (3, "fresh", 0.5)])
    assert recording.calls == [("execute", bulk._rewritten[guarded].statement)]
    assert [r[:3] for r in await _rows(conn)] == [(1, "new", 3.0), (2, "kept", 5.0), (3, "fresh", 0.5)]


def test_parameters_in_the_update_clause_are_never_rewritten() -> None:
    """``SET x = $2`` would meet an array in the one-statement form: such an upsert stays row by row."""
    import asyncio

    class NoCatalog:
        async def fetch(self, *args):  # pragma: no cover - must not be reached
            raise AssertionError("the catalog is read only for a rewritable statement")

    sql = "INSERT INTO bulk_t (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = $2"
    assert asyncio.run(BulkInserts()._bulk_statement(NoCatalog(), sql)) is None


_keys = st.integers(min_value=1, max_value=6)
_upsert_rows = st.lists(st.tuples(_keys, st.text("ab\u00e9", max_size=3), st.floats(-5, 5, allow_nan=False)), max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(existing=_upsert_rows, rows=_upsert_rows)
async def test_an_upsert_gives_what_row_by_row_execution_gives(conn, existing, rows) -> None:
    """Whatever the rows (repeated keys or not, existing rows or not), the table ends as with one execution per row."""
    upsert = (
        "INSERT INTO {t} (id, name, score) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
        "name = excluded.name, score = {t}.score + excluded.score WHERE {t}.score <= excluded.score"
    )
    results = []
    for table, run in (("bulk_a", BulkInserts().executemany), ("bulk_b", None)):
        # emptied, not recreated: a recreated table is a new row type (see the migration tests below)
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, name text, score double precision)")
        await conn.execute(f"TRUNCATE {table}")
        await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", existing)
        sql = upsert.format(t=table)
        if rows:
            await (run(conn, sql, rows) if run else conn.executemany(sql, rows))
        results.append([tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY id")])
    assert results[0] == results[1]


async def test_a_failing_bulk_insert_fails_like_the_row_by_row_one(conn) -> None:
    """A duplicate key in a plain INSERT is still a unique violation (nothing half-written inside a transaction)."""
    bulk = BulkInserts()
    async with conn.transaction():
        await bulk.executemany(conn, PLAIN, [(9, "x", 0.0, b"")])
    with pytest.raises(asyncpg.UniqueViolationError):
        async with conn.transaction():
            await bulk.executemany(conn, PLAIN, [(10, "y", 0.0, b""), (9, "dup", 0.0, b"")])
    assert [r[0] for r in await _rows(conn)] == [9]


async def test_columns_named_out_of_order_land_by_name_and_unnamed_ones_get_defaults(conn) -> None:
    """Columns named out of table order land in the right place; a column the INSERT leaves out gets its default."""
    await conn.execute("ALTER TABLE bulk_t ADD COLUMN tag text NOT NULL DEFAULT 'dflt'")
    sql = "INSERT INTO bulk_t (data, id, name) VALUES ($1, $2, $3)"
    bulk = BulkInserts()
    recording = RecordingConnection(conn)
    await bulk.executemany(recording, sql, [(b"\x01", 1, "a"), (None, 2, "b")])
    assert recording.calls == [("execute", bulk._rewritten[sql].statement)]
    rows = [tuple(r) for r in await conn.fetch("SELECT id, name, score, data, tag FROM bulk_t ORDER BY id")]
    assert rows == [(1, "a", None, b"\x01", "dflt"), (2, "b", None, None, "dflt")]


@pytest.mark.parametrize(
    "migration",
    [
        "ALTER TABLE bulk_m ADD COLUMN tag text DEFAULT 'dflt'",
        "ALTER TABLE bulk_m DROP COLUMN extra",
        # the same count and types in other places: row values read by position would swap name and note
        "ALTER TABLE bulk_m DROP COLUMN name; ALTER TABLE bulk_m ADD COLUMN name text",
        "DROP TABLE bulk_m; CREATE TABLE bulk_m (id bigint PRIMARY KEY, note text, name text)",
    ],
    ids=["column added", "unnamed column dropped", "column dropped and added again", "table recreated"],
)
async def test_a_migration_under_a_running_instance_leaves_inserts_right(conn, pg_dsn, migration) -> None:
    """Another session changes the table between two bulk inserts: the next one works and puts every value
    in its named column."""
    await conn.execute("CREATE TABLE bulk_m (id bigint PRIMARY KEY, name text, note text, extra text)")
    sql = "INSERT INTO bulk_m (id, name, note) VALUES ($1, $2, $3)"
    bulk = BulkInserts()
    await bulk.executemany(conn, sql, [(1, "n1", "t1"), (2, "n2", "t2")])
    other = await asyncpg.connect(pg_dsn)
    try:
        await other.execute(migration)
    finally:
        await other.close()
    async with conn.transaction():
        await bulk.executemany(conn, sql, [(3, "n3", "t3"), (4, "n4", "t4")])
    rows = [tuple(r) for r in await conn.fetch("SELECT id, name, note FROM bulk_m WHERE id > 2 ORDER BY id")]
    assert rows == [(3, "n3", "t3"), (4, "n4", "t4")]


async def test_the_store_keeps_appending_when_a_migration_changed_the_events_table(pg_dsn) -> None:
    """An additive migration while the store is open: appends keep succeeding, none is lost or doubled."""
    store = PostgresEventStore(pg_dsn)
    await store.open()
    try:
        await store.append("s", [TokenRevoked(at=1.0, jti="a", by="t"), TokenRevoked(at=1.0, jti="b", by="t")])
        other = await asyncpg.connect(pg_dsn)
        try:
            await other.execute("ALTER TABLE events ADD COLUMN annotation text")
        finally:
            await other.close()
        records = await store.append("s", [TokenRevoked(at=2.0, jti="c", by="t"), TokenRevoked(at=2.0, jti="d", by="t")])
        assert [r.position for r in records] == [3, 4]
        assert [r.event.jti for r in await store.read_all()] == ["a", "b", "c", "d"]
    finally:
        await store.close()


# --------------------------------------------------------------------------- queued inserts (execute_all)

_QUEUED = {
    "a_nothing": "INSERT INTO bulk_qa (id, name, score) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    "a_upsert": "INSERT INTO bulk_qa (id, name, score) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
                "name = excluded.name, score = bulk_qa.score + excluded.score",
    "b_nothing": "INSERT INTO bulk_qb (id, name, score) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    "b_upsert": "INSERT INTO bulk_qb (id, name, score) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
                "name = excluded.name, score = bulk_qb.score + excluded.score",
}


async def _queue_tables(conn, suffix: str = "") -> None:
    for table in ("bulk_qa", "bulk_qb"):
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {table}{suffix} (id bigint PRIMARY KEY, name text, score double precision)")
        await conn.execute(f"TRUNCATE {table}{suffix}")


async def test_inserts_into_distinct_tables_travel_as_one_statement(conn) -> None:
    """A group commit's shape: rows for two tables, one round trip, every row where it belongs."""
    await _queue_tables(conn)
    recording = RecordingConnection(conn)
    await BulkInserts().execute_all(recording, [
        (_QUEUED["a_nothing"], [(1, "a", 1.0), (2, "b", 2.0)]),
        (_QUEUED["b_upsert"], [(7, "x", 0.5)]),
    ])
    assert len(recording.calls) == 1 and recording.calls[0][1].startswith("WITH q1 AS (INSERT INTO bulk_qa")
    assert [tuple(r) for r in await conn.fetch("SELECT * FROM bulk_qa ORDER BY id")] == [(1, "a", 1.0), (2, "b", 2.0)]
    assert [tuple(r) for r in await conn.fetch("SELECT * FROM bulk_qb")] == [(7, "x", 0.5)]


_queued_rows = st.lists(st.tuples(st.integers(1, 5), st.sampled_from(["p", "q", None]), st.floats(0, 4, width=16)),
                        min_size=1, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queue=st.lists(st.tuples(st.sampled_from(sorted(_QUEUED)), _queued_rows), max_size=6))
async def test_queued_inserts_end_as_if_each_ran_on_its_own(conn, queue) -> None:
    """Whatever the mix (a table twice, repeated keys, upserts over earlier rows), the tables end as with
    one executemany per queued insert, in order."""
    await _queue_tables(conn)
    await _queue_tables(conn, "_ref")
    await BulkInserts().execute_all(conn, [(_QUEUED[name], rows) for name, rows in queue])
    for name, rows in queue:
        sql = _QUEUED[name].replace("bulk_qa", "bulk_qa_ref").replace("bulk_qb", "bulk_qb_ref")
        await conn.executemany(sql, rows)
    for table in ("bulk_qa", "bulk_qb"):
        got = [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY id")]
        assert got == [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table}_ref ORDER BY id")]


async def test_a_transactions_queued_inserts_are_visible_to_its_next_read(pg_dsn) -> None:
    """The store's transaction runs queued inserts before any other statement and before COMMIT."""
    store = PostgresEventStore(pg_dsn)
    await store.open()
    try:
        async with store.transaction() as tx:
            await tx.execute("CREATE TABLE queued_t (id bigint PRIMARY KEY)")
            await tx.executemany("INSERT INTO queued_t (id) VALUES ($1)", [(1,), (2,)])
            assert await tx.fetch("SELECT id FROM queued_t ORDER BY id") == [(1,), (2,)]
            await tx.executemany("INSERT INTO queued_t (id) VALUES ($1)", [(3,), (4,)])
        assert [r[0] for r in await store.fetch("SELECT id FROM queued_t ORDER BY id")] == [1, 2, 3, 4]
    finally:
        await store.close()
