"""Fixtures for the fault scenarios: the servers they need (fail under CI, skip elsewhere)."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import PG_URL, unreachable


@pytest.fixture
async def postgres() -> str:
    """The shared PostgreSQL server's URL, after a connection check (scenarios create their own database)."""
    asyncpg = pytest.importorskip("asyncpg")
    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        unreachable("PostgreSQL", exc)
    await conn.close()
    return PG_URL


@pytest.fixture
def redis_binary() -> str:
    """``redis-server`` on PATH (scenarios run their own instance on a free port)."""
    path = shutil.which("redis-server")
    if path is None:
        unreachable("redis-server binary", FileNotFoundError("redis-server not on PATH"))
    return path
