"""Migrations: recorded, idempotent, safe to race, refuse edited history; fresh and upgraded schemas end identical."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from eventstore import TokenRevoked
from eventstore.migrate import Migration, MigrationError, load_migrations, migrate
from eventstore.postgres import PostgresEventStore

SNAPSHOT = [
    """SELECT table_name, column_name, data_type, is_nullable, column_default
       FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, 2""",
    "SELECT tablename, indexname, replace(indexdef, current_schema() || '.', '') FROM pg_indexes "
    "WHERE schemaname = current_schema() ORDER BY 1, 2",
    """SELECT c.relname, t.tgname, replace(pg_get_triggerdef(t.oid), current_schema() || '.', '')
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
       WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal ORDER BY 1, 2""",
    """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
       WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2""",
    "SELECT proname, prosrc FROM pg_proc WHERE pronamespace = current_schema()::regnamespace ORDER BY 1",
    "SELECT version, name, checksum FROM baton_schema_migrations ORDER BY 1",
]


async def snapshot(conn: asyncpg.Connection) -> list[list[tuple]]:
    return [[tuple(r) for r in await conn.fetch(q)] for q in SNAPSHOT]


@pytest.fixture
async def second_dsn(pg_dsn: str):
    """Another throwaway schema next to ``pg_dsn``'s."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    base = pg_dsn.split("?", 1)[0]
    admin = await asyncpg.connect(base, timeout=5)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{base}?search_path={schema}"
    await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await admin.close()


async def test_fresh_and_upgraded_schemas_are_identical(pg_dsn: str, second_dsn: str) -> None:
    """Applying migrations one release at a time ends exactly where applying them all at once does."""
    migrations = load_migrations()
    assert len(migrations) >= 2
    upgraded = await asyncpg.connect(pg_dsn, timeout=5)
    fresh = await asyncpg.connect(second_dsn, timeout=5)
    try:
        for upto in range(1, len(migrations) + 1):
            applied = await migrate(upgraded, migrations[:upto])
            assert [m.version for m in applied] == [upto]
        assert [m.version for m in await migrate(fresh)] == list(range(1, len(migrations) + 1))
        assert await snapshot(upgraded) == await snapshot(fresh)
    finally:
        await upgraded.close()
        await fresh.close()


async def test_migrate_is_idempotent(pg_dsn: str) -> None:
    """A second run applies nothing and changes nothing."""
    conn = await asyncpg.connect(pg_dsn, timeout=5)
    try:
        await migrate(conn)
        before = await snapshot(conn)
        assert await migrate(conn) == []
        assert await snapshot(conn) == before
    finally:
        await conn.close()


async def test_racing_migrations_apply_each_file_once(pg_dsn: str) -> None:
    """Instances starting together serialize on the migration lock; every file is applied once."""
    conns = [await asyncpg.connect(pg_dsn, timeout=5) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(load_migrations())]
    finally:
        for c in conns:
            await c.close()


async def test_edited_migration_is_refused(pg_dsn: str) -> None:
    """A migration whose text changed after it was applied stops the run (history must not be edited)."""
    conn = await asyncpg.connect(pg_dsn, timeout=5)
    try:
        await migrate(conn)
        edited = [Migration(m.version, m.name, m.sql + "\n-- edited") if m.version == 1 else m for m in load_migrations()]
        with pytest.raises(MigrationError, match="edited"):
            await migrate(conn, edited)
    finally:
        await conn.close()


async def test_store_without_migrating_needs_a_migrated_schema(pg_dsn: str) -> None:
    """``migrate=False`` (the runtime role) refuses to open a schema that ``baton migrate`` has not prepared."""
    store = PostgresEventStore(pg_dsn, migrate=False)
    with pytest.raises(MigrationError, match="baton migrate"):
        await store.open()


async def test_listen_wakes_on_append(pg_dsn: str) -> None:
    """``listen`` calls back after a commit that appended events (the projection runner's wake-up)."""
    store = PostgresEventStore(pg_dsn)
    await store.open()
    woke = asyncio.Event()
    unlisten = await store.listen(woke.set)
    try:
        await store.append("s", [TokenRevoked(at=1.0, jti="j", by="t")])
        await asyncio.wait_for(woke.wait(), 10)
    finally:
        await unlisten()
        await store.close()
