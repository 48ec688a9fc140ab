"""The projection runner: exactly-once batches, restarts, leases across instances, rebuilds, wake-ups."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from eventstore import open_store
from projections.audit import AuditProjection
from projections.runner import ProjectionRunner, ensure_schema, projection_status, rebuild
from tests.projections.workload import Workload, append, rows


class Clock:
    """A settable clock, so lease expiry is driven by the test and never by sleeping."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _chain_events(store, count: int) -> None:
    w = Workload()
    events, parent = [], None
    for i in range(count):
        parent = w.exchange(parent=parent if parent and parent.depth < 3 else None, actor=f"svc-{i}")
        events.append(parent)
    await append(store, events)


async def test_catch_up_reaches_head_and_reports_zero_lag(store):
    """A runner applies every event once and `projections status` shows checkpoint = head, lag 0."""
    await _chain_events(store, 7)
    runner = ProjectionRunner(store, [AuditProjection()], batch_size=3)
    await runner.setup()
    assert (await projection_status(store, ["audit"]))[0].lag == 7
    assert await runner.catch_up() == 7
    [status] = await projection_status(store, ["audit"])
    assert (status.checkpoint, status.head, status.lag, status.lease_owner) == (7, 7, 0, runner.owner)
    assert len(await rows(store, "audit_exchanges")) == 7


async def test_a_set_stop_ends_catch_up_after_the_batch_in_hand(store):
    """Shutdown does not wait for a long catch-up: with ``stop`` set no further batch starts, and the
    checkpoint keeps the place for the next runner."""
    await _chain_events(store, 7)
    runner = ProjectionRunner(store, [AuditProjection()], batch_size=3)
    await runner.setup()
    stop = asyncio.Event()
    original = runner.step

    async def step_then_stop(projection, head=None):
        applied = await original(projection, head)
        stop.set()  # as if SIGTERM arrived during the first batch
        return applied

    runner.step = step_then_stop  # type: ignore[method-assign]
    assert await runner.catch_up(stop=stop) == 3
    [status] = await projection_status(store, ["audit"])
    assert (status.checkpoint, status.lag) == (3, 4)


async def test_restart_resumes_from_checkpoint_without_duplicates(store):
    """A new runner (a restarted process) continues where the checkpoint says; no row is applied twice."""
    await _chain_events(store, 10)
    first = ProjectionRunner(store, [AuditProjection()], batch_size=4, owner="a")
    await first.setup()
    assert await first.step(first.projections[0]) == 4
    await first.release()  # the process stops
    second = ProjectionRunner(store, [AuditProjection()], batch_size=4, owner="b")
    assert await second.catch_up() == 6
    exchanged = await store.fetch("SELECT position FROM audit_exchanges ORDER BY position")
    assert [r[0] for r in exchanged] == list(range(1, 11))
    summary = await store.fetch("SELECT exchanges FROM audit_subjects")
    assert summary == [(10,)]


class Exploding(AuditProjection):
    """The audit projection, failing after writing its rows (a crash in the middle of a batch)."""

    async def apply(self, tx, records):
        await super().apply(tx, records)
        raise RuntimeError("crash after the view update")


async def test_failed_batch_leaves_neither_rows_nor_checkpoint(store):
    """View and checkpoint commit together: a batch that fails leaves no trace, and is retried in full."""
    await _chain_events(store, 3)
    broken = ProjectionRunner(store, [Exploding()], owner="a")
    await broken.setup()
    with pytest.raises(RuntimeError):
        await broken.step(broken.projections[0])
    assert await rows(store, "audit_exchanges") == []
    assert (await projection_status(store, ["audit"]))[0].checkpoint == 0
    fixed = ProjectionRunner(store, [AuditProjection()], owner="a")
    assert await fixed.catch_up() == 3
    assert len(await rows(store, "audit_exchanges")) == 3


async def test_two_runners_only_lease_holder_applies_and_other_takes_over_after_expiry(store):
    """With two instances up, one holds the lease; the other applies nothing until the lease expires."""
    clock = Clock()
    await _chain_events(store, 4)
    a = ProjectionRunner(store, [AuditProjection()], owner="a", batch_size=2, lease_seconds=10, clock=clock)
    b = ProjectionRunner(store, [AuditProjection()], owner="b", batch_size=2, lease_seconds=10, clock=clock)
    await a.setup()
    assert await a.step(a.projections[0]) == 2
    assert await b.catch_up() == 0
    assert (await projection_status(store, ["audit"]))[0].lease_owner == "a"

    clock.now += 11  # a has died silently: its lease runs out
    assert await b.catch_up() == 2
    assert (await projection_status(store, ["audit"]))[0].lease_owner == "b"
    await _chain_events(store, 1)
    assert await a.step(a.projections[0]) == 0  # fenced: a's next batch sees b's lease
    assert len(await rows(store, "audit_exchanges")) == 4


async def test_two_runners_racing_apply_each_event_once(store):
    """Runners started together on the same log never both apply a batch: every row exists once."""
    await _chain_events(store, 30)
    await ensure_schema(store, [AuditProjection()])
    runners = [ProjectionRunner(store, [AuditProjection()], owner=f"r{i}", batch_size=5) for i in range(3)]
    applied = await asyncio.gather(*(r.catch_up() for r in runners))
    assert sum(applied) == 30
    assert sorted(applied)[:2] == [0, 0]
    assert len(await rows(store, "audit_exchanges")) == 30


async def test_released_lease_is_taken_at_once(store):
    """A runner that stops cleanly releases its lease, so the next instance does not wait for expiry."""
    await _chain_events(store, 2)
    a = ProjectionRunner(store, [AuditProjection()], owner="a", batch_size=1)
    b = ProjectionRunner(store, [AuditProjection()], owner="b", batch_size=1)
    await a.setup()
    await a.step(a.projections[0])
    await a.release()
    assert await b.catch_up() == 1


async def test_rebuild_replays_reports_progress_and_equals_live(store):
    """`rebuild` resets the view and replays it to the same rows, reporting position, head and events/s."""
    await _chain_events(store, 9)
    live = ProjectionRunner(store, [AuditProjection()])
    await live.setup()
    await live.catch_up()
    before = {t: await rows(store, t) for t in ("audit_exchanges", "audit_exchange_actors", "audit_subjects")}
    reports = []
    final = await rebuild(store, AuditProjection(), progress=reports.append, batch_size=4)
    assert [r.position for r in reports] == [4, 8, 9, 9]
    assert final.events == 9 and final.head == 9 and final.events_per_second > 0
    assert {t: await rows(store, t) for t in before} == before
    [status] = await projection_status(store, ["audit"])
    assert (status.checkpoint, status.rebuilding_from, status.lease_owner) == (9, None, None)


async def test_rebuild_from_position_keeps_only_later_events(store):
    """`rebuild(from_position=P)` empties the view and replays events with position >= P."""
    await _chain_events(store, 5)
    await rebuild(store, AuditProjection(), 4)
    positions = await store.fetch("SELECT position FROM audit_exchanges ORDER BY position")
    assert [r[0] for r in positions] == [4, 5]


async def test_interrupted_rebuild_resumes_instead_of_restarting(store):
    """A rebuild stopped half-way continues from its checkpoint when run again, and ends identical."""
    await _chain_events(store, 10)

    def stop_after_first_batch(report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await rebuild(store, AuditProjection(), progress=stop_after_first_batch, batch_size=4)
    assert (await projection_status(store, ["audit"]))[0].rebuilding_from == 0
    resumed = await rebuild(store, AuditProjection(), batch_size=4)
    assert resumed.events == 6
    assert len(await rows(store, "audit_exchanges")) == 10
    again = await rebuild(store, AuditProjection(), batch_size=4)
    assert again.events == 10  # a finished rebuild is not "resumed": running it again starts over
    assert len(await rows(store, "audit_exchanges")) == 10


class LeaseRecording(AuditProjection):
    """The audit projection, noting who holds the lease inside each batch's transaction."""

    def __init__(self) -> None:
        self.owners = []

    async def apply(self, tx, records):
        self.owners.append((await tx.fetch("SELECT owner FROM projection_leases WHERE name = 'audit'"))[0][0])
        await super().apply(tx, records)


async def test_rebuild_takes_the_lease_from_the_live_runner(store):
    """A rebuild holds the lease for each of its batches (even from a live owner); afterwards the live runner
    carries on from the rebuilt checkpoint."""
    await _chain_events(store, 3)
    live = ProjectionRunner(store, [AuditProjection()], owner="live", batch_size=1, lease_seconds=3600)
    await live.setup()
    await live.step(live.projections[0])
    recording = LeaseRecording()
    await rebuild(store, recording, owner="rebuild", batch_size=2)
    assert recording.owners == ["rebuild", "rebuild"]
    assert await live.step(live.projections[0]) == 0  # fenced out: its believed lease was taken
    await _chain_events(store, 1)
    assert await live.catch_up() == 1
    assert len(await rows(store, "audit_exchanges")) == 4


async def _status_until(store, condition) -> None:
    """Wait (up to ~5 s) until the audit projection's status satisfies ``condition``."""
    for _ in range(500):
        if condition((await projection_status(store, ["audit"]))[0]):
            return
        await asyncio.sleep(0.01)


class ListeningStore:
    """A store wrapper offering `listen(callback)` like the PostgreSQL backend's LISTEN/NOTIFY."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.callbacks = []
        self.unlistened = False

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def listen(self, callback):
        self.callbacks.append(callback)

        async def unlisten():
            self.unlistened = True

        return unlisten


async def test_run_loop_follows_new_events_and_wakes_on_notify(store):
    """`run` subscribes through `store.listen`, catches up on each notification, and unsubscribes on stop."""
    wrapped = ListeningStore(store)
    runner = ProjectionRunner(wrapped, [AuditProjection()], poll_interval=3600)  # only a notify can wake it
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while not wrapped.callbacks:
        await asyncio.sleep(0.01)
    await _chain_events(store, 2)
    wrapped.callbacks[0]()
    await _status_until(store, lambda s: s.checkpoint == 2)
    stop.set()
    await asyncio.wait_for(task, 5)
    [status] = await projection_status(store, ["audit"])
    assert status.checkpoint == 2
    assert status.lease_owner is None  # released on stop
    assert wrapped.unlistened


@pytest.mark.postgres
async def test_postgres_notify_wakes_the_runner(pg_dsn):
    """On PostgreSQL an append's NOTIFY wakes a runner whose poll interval is an hour."""
    store = open_store(pg_dsn)
    await store.open()
    try:
        await _notify_wakes(store)
    finally:
        await store.close()


async def _notify_wakes(store) -> None:
    runner = ProjectionRunner(store, [AuditProjection()], poll_interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await _status_until(store, lambda s: s.lease_owner == runner.owner)  # the first catch-up has run
    await _chain_events(store, 1)
    await _status_until(store, lambda s: s.checkpoint == 1)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert (await projection_status(store, ["audit"]))[0].checkpoint == 1


async def test_run_loop_survives_a_failing_batch(store):
    """A projection that raises does not kill `run`: the batch rolls back and the loop keeps going."""
    await _chain_events(store, 1)
    runner = ProjectionRunner(store, [Exploding()], poll_interval=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await asyncio.sleep(0.1)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert (await projection_status(store, ["audit"]))[0].checkpoint == 0


class BatchRecorder(AuditProjection):
    """The audit projection, remembering how many events each batch it applied held."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def apply(self, tx, records) -> None:
        self.batches.append(len(records))
        await super().apply(tx, records)


class FetchCounter(ListeningStore):
    """A listening store that counts the reads the runner makes outside its batches."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.fetches = 0

    async def fetch(self, sql, *args):
        self.fetches += 1
        return await self._inner.fetch(sql, *args)


@contextlib.asynccontextmanager
async def notified_leader(store, batch_interval: float):
    """A runner that only notifications wake, once it holds the lease: (its store wrapper, batch recorder)."""
    wrapped = ListeningStore(store)
    recorder = BatchRecorder()
    runner = ProjectionRunner(wrapped, [recorder], poll_interval=3600, batch_interval=batch_interval)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await _status_until(store, lambda s: s.lease_owner == runner.owner)
    try:
        yield wrapped, recorder
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_burst_of_notifications_is_applied_in_one_batch(store):
    """With `batch_interval`, the commits notified during a busy moment share one transaction of the runner."""
    async with notified_leader(store, batch_interval=1.0) as (wrapped, recorder):
        for _ in range(4):  # four commits, each notified, well within the interval
            await _chain_events(store, 1)
            wrapped.callbacks[0]()
            await asyncio.sleep(0.02)
        await _status_until(store, lambda s: s.checkpoint == 4)
    assert recorder.batches == [4]
    assert (await projection_status(store, ["audit"]))[0].checkpoint == 4


async def test_without_batch_interval_each_notification_is_followed_at_once(store):
    """`batch_interval = 0` keeps the old behaviour: a notified commit is applied without waiting."""
    async with notified_leader(store, batch_interval=0) as (wrapped, recorder):
        for expected in (1, 2):
            await _chain_events(store, 1)
            wrapped.callbacks[0]()
            await _status_until(store, lambda s, n=expected: s.checkpoint == n)
    assert recorder.batches == [1, 1]


async def test_a_follower_ignores_notifications_and_polls_the_lease(store):
    """While another runner holds the lease, notifications do not make a follower query the database."""
    leader = ProjectionRunner(store, [AuditProjection()], owner="leader", lease_seconds=600)
    await leader.setup()
    await leader.catch_up()  # takes the lease
    wrapped = FetchCounter(store)
    follower = ProjectionRunner(wrapped, [AuditProjection()], owner="follower", poll_interval=3600, lease_seconds=600)
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    while not wrapped.callbacks:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    before = wrapped.fetches
    for _ in range(20):
        await _chain_events(store, 1)
        wrapped.callbacks[0]()
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert wrapped.fetches == before
    assert not follower.holds("audit")
