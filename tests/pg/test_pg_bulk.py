"""Many-row INSERTs on PostgreSQL run as one statement, with the same result as row by row.

Each behaviour is checked in both shapes the rows travel in: one array per column,
and one array of a row type of Baton's own (created on a connection of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import TokenRevoked
from eventstore.batch import EVENTS_INSERT
from eventstore.pg_bulk import BulkInserts, row_type_name
from eventstore.postgres import PostgresEventStore

pytestmark = pytest.mark.postgres

PLAIN = "INSERT INTO bulk_t (id, name, score, data) VALUES ($1, $2, $3, $4)"
NOTHING = "INSERT INTO bulk_t (id, name, score, data) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING"
UPDATE = "INSERT INTO bulk_t (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = excluded.name"


def definer(dsn: str):
    """A ``side_connection``: a connection of its own, as the store's pool gives."""

    @contextlib.asynccontextmanager
    async def side():
        other = await asyncpg.connect(dsn)
        try:
            yield other
        finally:
            await other.close()

    return side


async def in_another_session(dsn: str, sql: str) -> None:
    """Run ``sql`` on a connection of its own, as a migration or an operator would."""
    other = await asyncpg.connect(dsn)
    try:
        await other.execute(sql)
    finally:
        await other.close()


@pytest.fixture(params=["column arrays", "row type"])
def make_bulk(request, pg_dsn):
    """Builds a :class:`BulkInserts` that sends rows as column arrays, or as an array of a row type."""
    define = definer(pg_dsn) if request.param == "row type" else None
    return lambda: BulkInserts(define)


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


async def test_plain_and_do_nothing_inserts_become_one_statement(make_bulk, conn) -> None:
    """Rows with NULLs, floats and bytes land exactly as given; a conflicting row is skipped; one rewrite each."""
    bulk = make_bulk()
    rows = [(1, "a", 1.5, b"\x00\x01"), (2, None, None, None), (3, "c", -0.0, b"")]
    await bulk.executemany(conn, PLAIN, rows)
    await bulk.executemany(conn, NOTHING, [(3, "again", 9.0, b"x"), (4, "d", 2.0, b"y")])
    assert await _rows(conn) == [*rows, (4, "d", 2.0, b"y")]
    assert bulk._rewritten[PLAIN] is not None and "unnest" in bulk._rewritten[PLAIN][0]
    assert bulk._rewritten[NOTHING] is not None


async def test_an_upsert_touching_one_key_twice_goes_row_by_row(make_bulk, conn) -> None:
    """One statement may not update a row twice: rows repeating a key are executed one by one, the last wins."""
    bulk = make_bulk()
    recording = RecordingConnection(conn)
    await bulk.executemany(recording, UPDATE, [(7, "first"), (8, "other"), (7, "second")])
    assert recording.calls == [("executemany", UPDATE)]
    assert (await conn.fetchval("SELECT name FROM bulk_t WHERE id = 7")) == "second"
    assert (await conn.fetchval("SELECT name FROM bulk_t WHERE id = 8")) == "other"


async def test_an_upsert_with_distinct_keys_is_one_statement(make_bulk, conn) -> None:
    """Distinct conflict keys: inserted and updated rows in one execution, with the DO UPDATE's WHERE applied."""
    guarded = (
        "INSERT INTO bulk_t (id, name, score) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
        "name = excluded.name, score = bulk_t.score + excluded.score WHERE bulk_t.score < excluded.score"
    )
    await conn.execute("INSERT INTO bulk_t (id, name, score) VALUES (1, 'old', 1.0), (2, 'kept', 5.0)")
    bulk = make_bulk()
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
async def test_an_upsert_gives_what_row_by_row_execution_gives(make_bulk, conn, existing, rows) -> None:
    """Whatever the rows (repeated keys or not, existing rows or not), the table ends as with one execution per row."""
    upsert = (
        "INSERT INTO {t} (id, name, score) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
        "name = excluded.name, score = {t}.score + excluded.score WHERE {t}.score <= excluded.score"
    )
    results = []
    for table, run in (("bulk_a", make_bulk().executemany), ("bulk_b", None)):
        # emptied, not recreated: a recreated table is a new row type (see the migration tests below)
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, name text, score double precision)")
        await conn.execute(f"TRUNCATE {table}")
        await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", existing)
        sql = upsert.format(t=table)
        if rows:
            await (run(conn, sql, rows) if run else conn.executemany(sql, rows))
        results.append([tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY id")])
    assert results[0] == results[1]


async def test_a_failing_bulk_insert_fails_like_the_row_by_row_one(make_bulk, conn) -> None:
    """A duplicate key in a plain INSERT is still a unique violation (nothing half-written inside a transaction)."""
    bulk = make_bulk()
    async with conn.transaction():
        await bulk.executemany(conn, PLAIN, [(9, "x", 0.0, b"")])
    with pytest.raises(asyncpg.UniqueViolationError):
        async with conn.transaction():
            await bulk.executemany(conn, PLAIN, [(10, "y", 0.0, b""), (9, "dup", 0.0, b"")])
    assert [r[0] for r in await _rows(conn)] == [9]


async def test_columns_named_out_of_order_land_by_name_and_unnamed_ones_get_defaults(make_bulk, conn) -> None:
    """Columns named out of table order land in the right place; a column the INSERT leaves out gets its default."""
    await conn.execute("ALTER TABLE bulk_t ADD COLUMN tag text NOT NULL DEFAULT 'dflt'")
    sql = "INSERT INTO bulk_t (data, id, name) VALUES ($1, $2, $3)"
    bulk = make_bulk()
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
async def test_a_migration_under_a_running_instance_leaves_inserts_right(make_bulk, conn, pg_dsn, migration) -> None:
    """Another session changes the table between two bulk inserts: the next one works and puts every value
    in its named column."""
    await conn.execute("CREATE TABLE bulk_m (id bigint PRIMARY KEY, name text, note text, extra text)")
    sql = "INSERT INTO bulk_m (id, name, note) VALUES ($1, $2, $3)"
    bulk = make_bulk()
    await bulk.executemany(conn, sql, [(1, "n1", "t1"), (2, "n2", "t2")])
    await in_another_session(pg_dsn, migration)
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
        await in_another_session(pg_dsn, "ALTER TABLE events ADD COLUMN annotation text")
        records = await store.append("s", [TokenRevoked(at=2.0, jti="c", by="t"), TokenRevoked(at=2.0, jti="d", by="t")])
        assert [r.position for r in records] == [3, 4]
        assert store._bulk._rewritten[EVENTS_INSERT].row_type  # the store's rows go as its row type
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


async def test_inserts_into_distinct_tables_travel_as_one_statement(make_bulk, conn) -> None:
    """A group commit's shape: rows for two tables, one round trip, every row where it belongs."""
    await _queue_tables(conn)
    recording = RecordingConnection(conn)
    await make_bulk().execute_all(recording, [
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
async def test_queued_inserts_end_as_if_each_ran_on_its_own(make_bulk, conn, queue) -> None:
    """Whatever the mix (a table twice, repeated keys, upserts over earlier rows), the tables end as with
    one executemany per queued insert, in order."""
    await _queue_tables(conn)
    await _queue_tables(conn, "_ref")
    await make_bulk().execute_all(conn, [(_QUEUED[name], rows) for name, rows in queue])
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


# --------------------------------------------------------------------------- rows as one array of a row type

async def _row_types(conn) -> list[str]:
    return [r[0] for r in await conn.fetch(
        "SELECT typname FROM pg_type WHERE typname LIKE 'baton_rows_%' AND typnamespace = current_schema()::regnamespace"
    )]


async def test_rows_go_as_one_array_of_a_row_type_named_after_its_layout(conn, pg_dsn) -> None:
    """The first insert creates one type whose attributes are the statement's columns with the table's types;
    the statement then passes one parameter, and every value lands in its named column."""
    bulk = BulkInserts(definer(pg_dsn))
    recording = RecordingConnection(conn)
    sql = "INSERT INTO bulk_t (data, id, name, score) VALUES ($1, $2, $3, $4)"
    rows = [(b"\x00", 1, "a", 1.5), (None, 2, None, None), [b"", 3, "c", float("inf")]]
    await bulk.executemany(recording, sql, rows)
    expected_type = row_type_name([("data", "bytea"), ("id", "bigint"), ("name", "text"), ("score", "double precision")])
    assert await _row_types(conn) == [expected_type]
    statement = bulk._rewritten[sql].statement
    assert recording.calls == [("execute", statement)] and "unnest($1::" in statement and "$2" not in statement
    assert await _rows(conn) == [(1, "a", 1.5, b"\x00"), (2, None, None, None), (3, "c", float("inf"), b"")]
    # a second instance finds the type and creates nothing more
    await BulkInserts(definer(pg_dsn)).executemany(conn, sql, [(b"z", 4, "d", 0.0)])
    assert await _row_types(conn) == [expected_type]


async def test_the_row_type_outlives_a_rolled_back_transaction(conn, pg_dsn) -> None:
    """The type is created outside the inserting transaction: a rollback of that transaction does not take it
    away from under the instance's cached statement."""
    bulk = BulkInserts(definer(pg_dsn))
    with pytest.raises(RuntimeError):
        async with conn.transaction():
            await bulk.executemany(conn, PLAIN, [(1, "gone", 0.0, b"")])
            raise RuntimeError("the batch fails after its insert")
    async with conn.transaction():
        await bulk.executemany(conn, PLAIN, [(2, "kept", 0.0, b"")])
    assert [r[:2] for r in await _rows(conn)] == [(2, "kept")]
    assert bulk._rewritten[PLAIN].row_type


async def test_instances_creating_the_same_row_type_at_once_both_insert(pg_dsn) -> None:
    """Two instances' first inserts race to create the type: both succeed, one type exists."""
    conns = [await asyncpg.connect(pg_dsn) for _ in range(2)]
    try:
        await conns[0].execute("CREATE TABLE bulk_t (id bigint PRIMARY KEY, name text, score double precision, data bytea)")
        await asyncio.gather(*(BulkInserts(definer(pg_dsn)).executemany(c, PLAIN, [(i, "x", 0.0, b"")])
                               for i, c in enumerate(conns)))
        assert sorted(r[0] for r in await conns[0].fetch("SELECT id FROM bulk_t")) == [0, 1]
        assert len(await _row_types(conns[0])) == 1
    finally:
        for c in conns:
            await c.close()


async def test_a_type_of_that_name_with_another_layout_is_not_used(conn, pg_dsn) -> None:
    """Only a type whose attributes are exactly the statement's columns and types is trusted with the rows."""
    layout = [("id", "bigint"), ("name", "text"), ("score", "double precision"), ("data", "bytea")]
    await conn.execute(f"CREATE TYPE {row_type_name(layout)} AS (name text, id bigint, score double precision, data bytea)")
    bulk = BulkInserts(definer(pg_dsn))
    await bulk.executemany(conn, PLAIN, [(1, "a", 0.5, b"q")])
    assert not bulk._rewritten[PLAIN].row_type
    assert await _rows(conn) == [(1, "a", 0.5, b"q")]


async def test_a_role_that_may_not_create_types_falls_back_to_column_arrays(conn, pg_dsn) -> None:
    """A runtime role with INSERT and SELECT only: the type cannot be made, the insert is still one statement,
    correct, and a warning says why."""
    from structlog.testing import capture_logs

    role = f"baton_noddl_{uuid.uuid4().hex[:8]}"
    schema = await conn.fetchval("SELECT current_schema()")
    await conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        await conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}; GRANT SELECT, INSERT ON bulk_t TO {role}')
        parts = urlsplit(pg_dsn)
        limited_dsn = urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
        limited = await asyncpg.connect(limited_dsn)
        try:
            bulk = BulkInserts(definer(limited_dsn))
            with capture_logs() as logs:
                await bulk.executemany(limited, PLAIN, [(1, "a", 0.5, b"q"), (2, "b", 1.5, None)])
            assert not bulk._rewritten[PLAIN].row_type and "unnest" in bulk._rewritten[PLAIN].statement
            assert [e["error"] for e in logs if e["event"] == "bulk_row_type_unavailable"] == ["InsufficientPrivilegeError"]
        finally:
            await limited.close()
        assert await _rows(conn) == [(1, "a", 0.5, b"q"), (2, "b", 1.5, None)]
        assert await _row_types(conn) == []
    finally:
        await conn.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


async def test_a_row_type_dropped_under_a_running_instance_is_made_again(conn, pg_dsn) -> None:
    """An operator drops Baton's row types while it runs: at most the next insert fails (nothing half-written),
    and the one after it makes the type again and lands."""
    bulk = BulkInserts(definer(pg_dsn))
    await bulk.executemany(conn, PLAIN, [(1, "a", 0.0, b"")])
    for name in await _row_types(conn):
        await in_another_session(pg_dsn, f"DROP TYPE {name}")
    try:
        async with conn.transaction():
            await bulk.executemany(conn, PLAIN, [(2, "b", 0.0, b"")])
    except asyncpg.PostgresError:
        pass
    async with conn.transaction():
        await bulk.executemany(conn, PLAIN, [(3, "c", 0.0, b"")])
    assert [r[0] for r in await _rows(conn)] in ([1, 3], [1, 2, 3])
    assert len(await _row_types(conn)) == 1
