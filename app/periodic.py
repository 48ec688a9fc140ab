"""A background job that runs one round every few seconds on the running event loop."""

from __future__ import annotations

import asyncio
import contextlib


class Periodic:
    """Base of Baton's pollers: subclasses set ``period`` and ``task_name`` and define :meth:`round`.

    :meth:`round` must handle its own failures; an exception escaping it ends the job.
    """

    period: float
    task_name = "baton-periodic"
    _task: asyncio.Task[None] | None = None

    async def round(self) -> None:
        """One unit of work."""
        raise NotImplementedError

    def start(self) -> None:
        """Run :meth:`round` every ``period`` seconds until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        """Stop the job (a round in progress is cancelled)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            await self.round()
