"""Time-filtered audit lists start from a time mark and still return exactly the rows at or after ``since``.

Event times follow positions only roughly (jitter of a few seconds either way), the runner
applies the log in batches of any size, and part of the log may have been written without
marks (by a release before them, or an older runner during a rolling upgrade): whatever the
mix, a ``since`` filter gives what filtering every row would give.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from projections import audit_queries as q
from projections import audit_time
from projections.audit import AuditProjection
from projections.runner import ProjectionRunner
from tests.projections.workload import T0, Workload, append

LISTS = {"exchanges": q.exchanges, "denied": q.denied, "revocations": q.revocations}


def _events(rng: random.Random, count: int) -> list[tuple[str, Any]]:
    """(view, event) in log order, each timed near its place in the log."""
    w = Workload()
    made: list[tuple[str, Any]] = []
    for i in range(count):
        w.clock = T0 + i * 0.4 + rng.uniform(-3.0, 3.0) - 1.0  # the workload adds one second per event
        roll = rng.random()
        if roll < 0.65:
            made.append(("exchanges", w.exchange(sub=rng.choice(["alice", "bob"]))))
        elif roll < 0.9:
            made.append(("denied", w.denied()))
        else:
            made.append(("revocations", w.revoke_token(f"tok-{i}")))
    return made


async def _runner(store) -> ProjectionRunner:
    runner = ProjectionRunner(store, [AuditProjection()])
    await runner.setup()
    return runner


async def _catch_up(runner: ProjectionRunner, batch_size: int) -> None:
    runner.batch_size = batch_size
    await runner.catch_up()


async def _all_positions(store, view: str, since: float) -> list[int]:
    positions: list[int] = []
    after = 0
    while True:
        page = await LISTS[view](store, since=since, after=after, limit=7)
        positions += [item["position"] for item in page["items"]]
        if page["next"] is None:
            return positions
        after = page["next"]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("history", ["marked throughout", "rows from before marks", "an older runner in between"])
async def test_a_since_filter_returns_exactly_the_rows_at_or_after_it(store, monkeypatch, seed: int, history: str) -> None:
    rng = random.Random(seed)
    events = _events(rng, 45)
    thirds = [events[:15], events[15:30], events[30:]]
    runner = await _runner(store)
    for phase, part in enumerate(thirds):
        await append(store, [event for _, event in part])
        if phase == 1 and history == "an older runner in between":
            async def unmarked(_tx, _rows):  # a release without time marks applies this part
                return None

            with monkeypatch.context() as patch:
                patch.setattr(audit_time, "mark", unmarked)
                await _catch_up(runner, rng.randint(1, 7))
            continue
        await _catch_up(runner, rng.randint(1, 7))
        if phase == 0 and history == "rows from before marks":
            for table in audit_time.TABLES:
                await store.fetch(f"DELETE FROM {table}")

    times = sorted(event.at for _, event in events)
    probes = [T0 - 10, *times, *(t + 0.05 for t in times), *(t - 0.05 for t in times), times[-1] + 10]
    for view in LISTS:
        expected_rows = [(position, event.at) for position, (v, event) in enumerate(events, start=1) if v == view]
        for since in probes:
            expected = [position for position, at in expected_rows if at >= since]
            assert await _all_positions(store, view, since) == expected, (view, since)


async def test_marks_only_ever_err_low(store) -> None:
    """Every mark's position has no earlier row of its view at or after its second."""
    events = _events(random.Random(99), 60)
    await append(store, [event for _, event in events])
    await _catch_up(await _runner(store), 5)
    marks = await store.fetch("SELECT view, second, first_position FROM audit_time_marks ORDER BY view, second")
    assert marks, "the runner made no marks"
    for view, second, first_position in marks:
        earlier = [e.at for p, (v, e) in enumerate(events, start=1) if v == view and p < first_position]
        assert all(at < second for at in earlier), (view, second, first_position)
