"""Time marks of the audit views: from which position a ``since`` filter can start.

Audit lists page in position order and filter on ``at``, the event's own clock. ``at``
almost follows position, but not exactly (instances' clocks differ, a group commit
orders what was timed a little apart), so an index on ``at`` cannot give a page in
position order, and a filter ``at >= since`` made PostgreSQL walk the rows from the
oldest one: 23–66 ms at 300,000 rows, growing with the table.

The runner keeps, per view, the running maximum of ``at`` in position order, and a
mark each time it reaches a new whole second: ``(view, second, first_position)``,
where no row before ``first_position`` has ``at`` of that second or later. For
``since``, the greatest mark at or before ``floor(since)`` gives a position no row
with ``at >= since`` precedes: the list starts there, one index step away. Marks may
only err low (a smaller position is always safe). ``audit_time_cover`` remembers how
far the marks account for each view; rows beyond it that this runner did not write
(rows from before marks existed, or written by an older release during a rolling
upgrade) are folded in, by their greatest ``at``, before the next marks are made.

The running maximum only grows: one event stamped far in the future (a host with a
wrong clock) stops new marks for its view until real time passes it, and ``since``
filters meanwhile start from that event's mark or earlier — correct, but slower
again as rows accumulate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from eventstore.store import Tx, bigint_seconds

#: the views that keep marks, and their tables
VIEWS = {"exchanges": "audit_exchanges", "denied": "audit_denied", "revocations": "audit_revocations"}

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS audit_time_marks (
        view TEXT NOT NULL,
        second BIGINT NOT NULL,
        first_position BIGINT NOT NULL,
        PRIMARY KEY (view, second)
    )""",
    """CREATE TABLE IF NOT EXISTS audit_time_cover (
        view TEXT PRIMARY KEY,
        through BIGINT NOT NULL,
        running BIGINT NOT NULL
    )""",
]
TABLES = ("audit_time_marks", "audit_time_cover")

MARK_INSERT = "INSERT INTO audit_time_marks (view, second, first_position) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
COVER_UPSERT = (
    "INSERT INTO audit_time_cover (view, through, running) VALUES ($1, $2, $3) "
    "ON CONFLICT (view) DO UPDATE SET through = excluded.through, running = excluded.running"
)

#: per view: how far the marks go, their running maximum, and the greatest ``at`` of rows beyond that and before
#: ``$n`` (the batch's first row of the view) — one round trip for all three views
_STATE = (
    "SELECT "
    + ", ".join(
        f"c{n}.through, c{n}.running, "
        f"(SELECT max(at) FROM {table} WHERE position > COALESCE(c{n}.through, 0) AND position < ${n})"
        for n, table in enumerate(VIEWS.values(), start=1)
    )
    + " FROM (SELECT 1) AS one "
    + " ".join(
        f"LEFT JOIN audit_time_cover c{n} ON c{n}.view = '{view}'" for n, view in enumerate(VIEWS, start=1)
    )
)

#: the position a ``since`` filter on a view can start from (``{view}`` and ``{second}``: parameters naming the
#: view and :func:`since_second` of ``since``)
START_SQL = (
    "COALESCE((SELECT m.first_position FROM audit_time_marks m WHERE m.view = {view} AND m.second <= {second} "
    "ORDER BY m.second DESC LIMIT 1), 0)"
)


def since_second(since: float) -> int:
    """The whole second a ``since`` filter looks its mark up by (or a row's ``at`` is marked at), as a bigint."""
    return bigint_seconds(since)


async def mark(tx: Tx, rows_by_view: Mapping[str, Sequence[Sequence[Any]]]) -> None:
    """Queue the marks and the cover for a batch's new rows ``(position, at, …)`` of each view, in position order."""
    present = {view: rows for view, rows in rows_by_view.items() if rows}
    if not present:
        return
    firsts = [int(present[view][0][0]) if view in present else 0 for view in VIEWS]
    (state,) = await tx.fetch(_STATE, *firsts)
    marks: list[tuple[str, int, int]] = []
    covers: list[tuple[str, int, int]] = []
    for index, view in enumerate(VIEWS):
        rows = present.get(view)
        if not rows:
            continue
        stored_through, stored_running, unmarked = state[3 * index : 3 * index + 3]
        through = 0 if stored_through is None else int(stored_through)
        running = -math.inf if stored_running is None else int(stored_running)
        if unmarked is not None:  # rows this runner did not mark: they hold the running maximum this high
            second = since_second(unmarked)
            if second > running:
                marks.append((view, second, through + 1))
                running = second
        for row in rows:
            second = since_second(row[1])
            if second > running:
                marks.append((view, second, int(row[0])))
                running = second
        covers.append((view, max(through, int(rows[-1][0])), int(running)))  # finite: rows is not empty
    await tx.executemany(MARK_INSERT, marks)
    await tx.executemany(COVER_UPSERT, covers)
