"""The group committer's gathering window (``[store] batch_wait_ms``): one wait per batch, cut short when full."""

from __future__ import annotations

import asyncio
import time

from eventstore.batch import GroupCommitter, PendingAppend


def _pending(n: int) -> PendingAppend:
    future: asyncio.Future = asyncio.get_running_loop().create_future()
    return PendingAppend(f"s-{n}", [], [f"e-{n}"], -2, future, data=[])


class Recorder:
    """A flush that records batch sizes and answers every append."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def flush(self, batch: list[PendingAppend]) -> None:
        self.sizes.append(len(batch))
        for item in batch:
            item.result = []


async def test_appends_arriving_within_the_window_share_one_batch() -> None:
    """Appends trickling in over 20 ms, inside a 200 ms window, are written together, not one by one."""
    recorder = Recorder()
    committer = GroupCommitter(recorder.flush, max_batch=256, max_wait=0.2)
    committer.start()

    appends = []
    for n in range(10):
        appends.append(asyncio.ensure_future(committer.submit(_pending(n))))
        await asyncio.sleep(0.002)
    await asyncio.wait_for(asyncio.gather(*appends), 5)
    await committer.stop()
    assert recorder.sizes == [10]


async def test_a_full_batch_is_written_without_waiting_out_the_window() -> None:
    """max_batch appends queued: the batch goes at once, though the window is a minute long."""
    recorder = Recorder()
    committer = GroupCommitter(recorder.flush, max_batch=8, max_wait=60.0)
    committer.start()
    started = time.monotonic()
    first = asyncio.ensure_future(committer.submit(_pending(0)))
    await asyncio.sleep(0.01)  # the writer took the first append and is waiting for more
    await asyncio.wait_for(asyncio.gather(first, *(committer.submit(_pending(n)) for n in range(1, 8))), 5)
    assert time.monotonic() - started < 5
    assert recorder.sizes == [8]
    await committer.stop()


async def test_without_a_window_a_lone_append_is_written_at_once() -> None:
    """max_wait 0 (the default): nothing waits; what is queued meanwhile joins the next batch."""
    recorder = Recorder()
    committer = GroupCommitter(recorder.flush, max_batch=256)
    committer.start()
    await asyncio.wait_for(committer.submit(_pending(0)), 1)
    await asyncio.wait_for(asyncio.gather(*(committer.submit(_pending(n)) for n in range(1, 6))), 1)
    await committer.stop()
    assert recorder.sizes[0] == 1 and sum(recorder.sizes) == 6


async def test_gathering_creates_no_task_per_append() -> None:
    """The window is one timed wait for the batch: 50 appends in it start no task of the committer's own."""
    loop = asyncio.get_running_loop()
    created: list[str] = []
    default = loop.get_task_factory()

    def counting(lp, coro, **kw):
        created.append(getattr(coro, "__qualname__", "?"))
        return default(lp, coro, **kw) if default else asyncio.Task(coro, loop=lp, **kw)

    recorder = Recorder()
    committer = GroupCommitter(recorder.flush, max_batch=256, max_wait=0.05)
    committer.start()
    loop.set_task_factory(counting)
    try:
        appends = [committer.submit(_pending(n)) for n in range(50)]
        first = asyncio.ensure_future(appends[0])
        await asyncio.sleep(0.005)
        await asyncio.wait_for(asyncio.gather(first, *appends[1:]), 5)
    finally:
        loop.set_task_factory(default)
    await committer.stop()
    assert sum(recorder.sizes) == 50
    assert "GroupCommitter.submit" in created  # the factory saw the callers' tasks
    assert [name for name in created if name.startswith("Queue.")] == []  # and none waiting on the queue


async def test_a_failing_batch_observer_leaves_no_append_waiting() -> None:
    """The metrics hook raising (a bug, a full registry) is logged; the batch's callers still get their answer."""
    recorder = Recorder()
    committer = GroupCommitter(recorder.flush, max_batch=256)

    def observer(size: int, seconds: float) -> None:
        raise RuntimeError("metrics broke")

    committer.on_batch = observer
    committer.start()
    assert await asyncio.wait_for(committer.submit(_pending(0)), 5) == []
    assert await asyncio.wait_for(committer.submit(_pending(1)), 5) == []
    await committer.stop()
    assert recorder.sizes == [1, 1]
