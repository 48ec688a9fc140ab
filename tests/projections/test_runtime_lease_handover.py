"""Stopping an instance hands the audit projection's lease over at once (the store is still open then)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tests.support.harness import make_harness


def _lease_owners(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        try:
            return [r[0] for r in conn.execute("SELECT owner FROM projection_leases WHERE name = 'audit'")]
        except sqlite3.OperationalError:  # the runner has not made its tables yet
            return []


async def test_a_stopped_instance_releases_its_audit_lease(tmp_path: Path) -> None:
    """The runner finishes and deletes its lease row during stop, so a successor need not wait for expiry."""
    harness = make_harness(tmp_path)
    async with harness:
        for _ in range(100):  # the runner takes the lease on its first poll
            if _lease_owners(tmp_path / "events.db"):
                break
            await asyncio.sleep(0.05)
        assert _lease_owners(tmp_path / "events.db"), "the runner never took the lease"
        task = harness.runtime._projections_task
    assert task is not None and task.done() and not task.cancelled()
    assert _lease_owners(tmp_path / "events.db") == []
