"""The store fixture of projection and audit tests, parametrized over the backends that exist."""

from __future__ import annotations

import importlib.util

import pytest

from eventstore import open_store

BACKENDS = ["sqlite"] + (["postgres"] if importlib.util.find_spec("eventstore.postgres") else [])


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    """A fresh store URL per test: a SQLite file, or a throwaway PostgreSQL schema (fails under CI if down)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    return request.getfixturevalue("pg_dsn")


@pytest.fixture
async def store(store_url):
    """An open event store with no inline projections."""
    s = open_store(store_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
