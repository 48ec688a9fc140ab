"""The store fixture of projection and audit tests, on every backend (``store_url`` from tests/conftest.py)."""

from __future__ import annotations

import pytest

from eventstore import open_store


@pytest.fixture
async def store(store_url):
    """An open event store with no inline projections."""
    s = open_store(store_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
