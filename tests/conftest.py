"""Shared fixtures: real PostgreSQL and Redis servers (fail under CI, skip elsewhere).

``BATON_TEST_PG_URL`` and ``BATON_TEST_REDIS_URL`` name the servers; CI sets
``CI=true`` and then an unreachable server is a test failure, never a skip.
"""

from __future__ import annotations

import os
import uuid

import pytest

PG_URL = os.environ.get("BATON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def unreachable(what: str, exc: BaseException) -> None:
    """Fail under CI, skip on a developer machine without the server."""
    message = f"{what} unreachable: {type(exc).__name__}: {exc}"
    if IN_CI:
        pytest.fail(message + " (CI must reach it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
async def pg_dsn():
    """A throwaway PostgreSQL schema; yields a DSN whose search_path points at it."""
    asyncpg = pytest.importorskip("asyncpg")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        unreachable("PostgreSQL", exc)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}search_path={schema}"
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    """An event store URL per backend: a SQLite file, or a throwaway PostgreSQL schema (fails under CI if down)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    return request.getfixturevalue("pg_dsn")


@pytest.fixture
async def redis_url():
    """The Redis server URL, after a PING; each test should use its own key prefix."""
    redis = pytest.importorskip("redis.asyncio")
    client = redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # any connection failure
        unreachable("Redis", exc)
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture
def key_prefix() -> str:
    """A unique Redis key prefix so tests never share state."""
    return f"baton-test:{uuid.uuid4().hex[:10]}:"
