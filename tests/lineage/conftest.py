"""Fixtures for the lineage suite: a store with the lineage projection, on every backend and write path.

On PostgreSQL every test runs twice: with batches of exchanges written in one call of the
projection's function (the default, :mod:`projections.lineage_sql`) and the classic way
(:func:`eventstore.batch.write_batch`), which must agree on every outcome.
"""

from __future__ import annotations

import pytest

from eventstore import open_store
from projections.lineage import LineageProjection


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("postgres-classic", marks=pytest.mark.postgres)])
def backend(request, tmp_path) -> tuple[str, dict[str, bool]]:
    """The store URL and its options (fails under CI when PostgreSQL is down)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db", {}
    return request.getfixturevalue("pg_dsn"), {"one_statement": request.param == "postgres"}


@pytest.fixture
async def store(backend):
    url, options = backend
    s = open_store(url, [LineageProjection()], **options)
    await s.open()
    yield s
    await s.close()
