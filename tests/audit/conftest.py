"""Fixtures: an open store on every backend that exists (SQLite, and PostgreSQL when built)."""

from tests.projections.fixtures import store  # noqa: F401
