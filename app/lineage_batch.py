"""Group reads of the lineage projection: concurrent lookups share one query.

An exchange of a Baton token, and every introspection, asks the lineage where
the token is in its chain and whether it is revoked: an indexed point lookup,
and on PostgreSQL a transaction of its own. :class:`BatchedLineageReader`
answers the lookups that arrive together with one ``IN (…)`` query, the way
group commit shares one transaction among concurrent appends.

Freshness is unchanged: a lookup is answered by a query that starts after the
lookup was asked (while a query is in flight, new keys wait for the next one),
so a revocation committed before the request asked is always seen.
(Revocations of other issuers' subjects are not read here at all: the exchange
appends on condition, and the lineage judges that under the write lock.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from eventstore.store import EventStore, placeholders
from projections.lineage import LINEAGE_COLUMNS, LineageReader, LineageRow, row_from_tuple

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: keys per query (bounded statement size; SQLite allows 32766 parameters, PostgreSQL 65535)
CHUNK = 500


class Coalescer(Generic[K, V]):
    """Answers ``load(key)`` calls in batches: one ``fetch_many`` call per batch of distinct keys.

    At most one batch is in flight; keys asked meanwhile form the next batch.
    A failure of ``fetch_many`` is raised to every caller of that batch.
    """

    def __init__(self, fetch_many: Callable[[list[K]], Awaitable[dict[K, V]]], default: V) -> None:
        self._fetch_many = fetch_many
        self._default = default
        self._pending: dict[K, list[asyncio.Future[V]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def load(self, key: K) -> V:
        """The value for ``key`` (``default`` when absent), from a query started after this call."""
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append(future)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let the requests already runnable in this loop turn add their keys
            while self._pending:
                batch, self._pending = self._pending, {}
                keys = list(batch)
                try:
                    found: dict[K, V] = {}
                    for start in range(0, len(keys), CHUNK):
                        found.update(await self._fetch_many(keys[start : start + CHUNK]))
                except BaseException as exc:  # every waiter of this batch gets the failure
                    for waiters in batch.values():
                        for future in waiters:
                            if not future.done():
                                future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for key, waiters in batch.items():
                    value = found.get(key, self._default)
                    for future in waiters:
                        if not future.done():
                            future.set_result(value)
        finally:
            self._task = None


class BatchedLineageReader(LineageReader):
    """:class:`LineageReader` whose per-request lookup (``get``) is grouped."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store)
        self._rows: Coalescer[str, LineageRow | None] = Coalescer(self._fetch_rows, None)

    async def get(self, jti: str) -> LineageRow | None:
        """The lineage of an issued token, or None when Baton never issued it."""
        return await self._rows.load(jti)

    async def _fetch_rows(self, jtis: Sequence[str]) -> dict[str, LineageRow | None]:
        rows = await self._store.fetch(f"SELECT {LINEAGE_COLUMNS} FROM lineage WHERE jti IN ({placeholders(1, len(jtis))})", *jtis)
        return {r[0]: row_from_tuple(r) for r in rows}
