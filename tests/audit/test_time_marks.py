"""Time-filtered audit lists start from a time mark and still return exactly the rows at or after ``since``.

Event times follow positions only roughly (jitter of a few seconds either way), the runner
applies the log in batches of any size, and part of the log may have been written without
marks (by a release before them, or an older runner during a rolling upgrade): whatever the
mix, a ``since`` filter gives what filtering every row would give.
"""

from __future__ import annotations

import math
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


def _expected_marks(events: list[tuple[str, Any]], unmarked: range = range(0)) -> list[tuple[str, int, int]]:
    """Where the running maximum of each view's whole seconds rises; rows in ``unmarked`` (1-based positions)
    were written without marks and count, by their greatest second, from the first position after the marked
    rows before them."""
    expected: list[tuple[str, int, int]] = []
    for view in LISTS:
        rows = [(p, math.floor(e.at)) for p, (v, e) in enumerate(events, start=1) if v == view]
        running, through, folded = -math.inf, 0, False
        for position, second in rows:
            if position in unmarked:
                continue
            if unmarked and not folded and position > unmarked.start:
                folded = True
                gap = [s for p, s in rows if p in unmarked]
                if gap and max(gap) > running:
                    running = max(gap)
                    expected.append((view, running, through + 1))
            if second > running:
                running = second
                expected.append((view, second, position))
            through = position
    return sorted(expected)


@pytest.mark.parametrize("history", ["marked throughout", "an older runner in between"])
async def test_marks_are_where_the_running_maximum_reaches_a_new_second(store, monkeypatch, history: str) -> None:
    """The runner's marks are exactly where each view's running maximum of ``at`` reaches a new whole second
    (unmarked rows folded in where the marked ones resume): as early as is safe, not merely safe."""
    events = _events(random.Random(99), 60)
    runner = await _runner(store)
    await append(store, [event for _, event in events[:20]])
    await _catch_up(runner, 5)
    await append(store, [event for _, event in events[20:40]])
    if history == "an older runner in between":
        async def unmarked(_tx, _rows):
            return None

        with monkeypatch.context() as patch:
            patch.setattr(audit_time, "mark", unmarked)
            await _catch_up(runner, 5)
    else:
        await _catch_up(runner, 5)
    await append(store, [event for _, event in events[40:]])
    await _catch_up(runner, 5)
    marks = sorted(tuple(r) for r in await store.fetch("SELECT view, second, first_position FROM audit_time_marks"))
    gap = range(21, 41) if history == "an older runner in between" else range(0)
    assert marks == _expected_marks(events, gap)


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e19", "-1e19"])
def test_a_time_beyond_the_calendar_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        q.parse_time(text)


@pytest.mark.parametrize(("since", "count"), [(math.inf, 0), (-math.inf, None), (math.nan, 0), (1e300, 0), (-1e300, None)])
async def test_extreme_since_values_filter_without_failing(store, since: float, count: int | None) -> None:
    """Called directly (not through the API's parsing), an extreme ``since`` filters like the comparison says."""
    events = _events(random.Random(7), 20)
    await append(store, [event for _, event in events])
    await _catch_up(await _runner(store), 7)
    exchanges = sum(1 for v, _ in events if v == "exchanges")
    assert len(await _all_positions(store, "exchanges", since)) == (exchanges if count is None else count)
