"""Fixtures for the lineage suite: a store with the lineage projection, on every backend (``store_url``)."""

from __future__ import annotations

import pytest

from eventstore import open_store
from projections.lineage import LineageProjection


@pytest.fixture
async def store(store_url):
    s = open_store(store_url, [LineageProjection()])
    await s.open()
    yield s
    await s.close()
