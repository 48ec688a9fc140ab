"""/readyz: store, migrations and keys; PostgreSQL reports whether its schema is current."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.support.harness import make_harness


async def test_readyz_reports_keys_and_no_migrations_on_sqlite(tmp_path: Path) -> None:
    """SQLite has no migrations to be behind on; the active kid is reported."""
    async with make_harness(tmp_path) as h:
        body = (await h.http.get("/readyz")).json()
    assert body["status"] == "ready" and body["migrations"] == "n/a"
    assert body["keys"] == h.runtime.keyring.kid and body["published_keys"] == 1


@pytest.mark.postgres
async def test_readyz_fails_while_postgresql_migrations_are_behind(tmp_path: Path, pg_dsn: str) -> None:
    """Current schema: ready. A migration missing from the database: 503 with ``migrations: behind``."""
    async with make_harness(tmp_path, store={"url": pg_dsn}) as h:
        ready = await h.http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["migrations"] == "current"
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("DELETE FROM baton_schema_migrations WHERE version = (SELECT max(version) FROM baton_schema_migrations)")
        finally:
            await conn.close()
        behind = await h.http.get("/readyz")
    assert behind.status_code == 503
    assert behind.json()["migrations"] == "behind" and behind.json()["status"] == "unavailable"
