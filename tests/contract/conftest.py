"""The contract suite's backends: every test here runs on SQLite and on PostgreSQL.

The PostgreSQL leg takes ``pg_dsn`` (a throwaway schema) from tests/conftest.py,
so under CI an unreachable server fails the run instead of skipping it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from eventstore import open_store
from eventstore.store import EventStore, InlineProjection, RecordedEvent, Tx


@dataclass
class Backend:
    """One store backend and an owner-level side door for tampering with its tables."""

    name: str
    url: str

    def make(self, projections: Sequence[InlineProjection] = (), **kwargs: Any) -> EventStore:
        """A new (unopened) store on this backend's database."""
        return open_store(self.url, projections, **kwargs)

    async def raw(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement outside the store, as the database owner (``$1`` parameters)."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.url[len("sqlite:///") :])
            try:
                rows = conn.execute(sql, {str(i): a for i, a in enumerate(args, 1)}).fetchall()
                conn.commit()
                return [tuple(r) for r in rows]
            finally:
                conn.close()
        pg = await asyncpg.connect(self.url, timeout=5)
        try:
            return [tuple(r) for r in await pg.fetch(sql, *args)]
        finally:
            await pg.close()

    async def drop_append_only_guard(self) -> None:
        """What an attacker with owner rights does first: remove the UPDATE/DELETE triggers."""
        if self.name == "sqlite":
            await self.raw("DROP TRIGGER events_no_update")
            await self.raw("DROP TRIGGER events_no_delete")
        else:
            await self.raw("DROP TRIGGER events_no_update_delete ON events")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Backend:
    """Each backend on a fresh database (a temp file, or a throwaway PostgreSQL schema)."""
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path}/events.db")
    return Backend("postgres", request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def store(backend: Backend):
    """An open store on each backend, with the recording test projection."""
    s = backend.make([SeenProjection()])
    await s.open()
    yield s
    await s.close()


class SeenProjection:
    """A tiny inline projection: records each position and whether the event was visible in its transaction."""

    name = "seen"
    tables = ("test_seen",)

    def __init__(self, fail_on_stream: str | None = None) -> None:
        self.fail_on_stream = fail_on_stream

    def schema(self, dialect: str) -> list[str]:
        return ["CREATE TABLE IF NOT EXISTS test_seen (position BIGINT PRIMARY KEY, visible INTEGER NOT NULL)"]

    async def apply(self, tx: Tx, events: Sequence[RecordedEvent]) -> None:
        for record in events:
            if record.stream_id == self.fail_on_stream:
                raise RuntimeError("projection failure (test)")
            [(visible,)] = await tx.fetch("SELECT count(*) FROM events WHERE position = $1", record.position)
            await tx.execute("INSERT INTO test_seen (position, visible) VALUES ($1, $2)", record.position, int(visible))

    async def reset(self, tx: Tx) -> None:
        await tx.execute("DELETE FROM test_seen")
