"""The runtime role can append and read, and cannot UPDATE, DELETE or TRUNCATE events, nor drop the guard."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from eventstore import TokenRevoked
from eventstore.migrate import grant_runtime_role
from eventstore.postgres import PostgresEventStore


@pytest.fixture
async def runtime_dsn(pg_dsn: str):
    """A fresh LOGIN role granted Baton's runtime privileges on the migrated test schema; its DSN."""
    role = f"baton_rt_{uuid.uuid4().hex[:10]}"
    owner = await asyncpg.connect(pg_dsn, timeout=5)
    migrated = PostgresEventStore(pg_dsn)
    await migrated.open()  # the owner migrates
    await migrated.close()
    await owner.execute(f'CREATE ROLE "{role}" LOGIN')
    await grant_runtime_role(owner, role)
    parts = urlsplit(pg_dsn)
    yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    await owner.execute(f'DROP OWNED BY "{role}"')
    await owner.execute(f'DROP ROLE "{role}"')
    await owner.close()


async def test_runtime_role_appends_but_cannot_rewrite(runtime_dsn: str) -> None:
    """Opened without migrating, the runtime role's store works; direct UPDATE/DELETE/TRUNCATE/DROP TRIGGER are refused."""
    store = PostgresEventStore(runtime_dsn, migrate=False)
    await store.open()
    try:
        [record] = await store.append("s", [TokenRevoked(at=1.0, jti="j", by="t")])
        assert record.position == 1
    finally:
        await store.close()
    conn = await asyncpg.connect(runtime_dsn, timeout=5)
    try:
        for sql in (
            "UPDATE events SET data = '\\x00' WHERE position = 1",
            "DELETE FROM events WHERE position = 1",
            "TRUNCATE events",
            "DROP TRIGGER events_no_update_delete ON events",
            "ALTER TABLE events DISABLE TRIGGER ALL",
            "DELETE FROM baton_schema_migrations",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
    finally:
        await conn.close()
