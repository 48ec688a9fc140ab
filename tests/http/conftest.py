"""The ``baton`` fixture: a started instance on each event store backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from app.secrets import hash_secret
from tests.support.harness import make_harness

ADMIN_SECRET = "admin-secret-for-tests"
ADMIN_HASH = hash_secret(ADMIN_SECRET, log_n=10)


@pytest.fixture
async def baton(tmp_path, store_url):
    async with make_harness(tmp_path, store={"url": store_url}, admin={"token_hash": ADMIN_HASH}) as harness:
        yield harness
