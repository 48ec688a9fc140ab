"""Applying key changes: under the key-file lock, recorded as events before the file is replaced.

:func:`apply_key_change` is the one write path for ``baton keys rotate|promote|retire``
and for the automatic schedule (:class:`KeyScheduler`, run by each instance
when ``signing.rotate_days`` > 0). The event is appended first: a change the
store could not record is not made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from eventstore import StoreError
from eventstore.store import EventStore

from .config import Config
from .key_file import KeyFileBusy, key_file_lock
from .key_lifecycle import KeyChange, LifecycleError, max_token_lifetime, record_changes, scheduled
from .periodic import Periodic
from .keys import Jwk, KeyError_, KeyRing, read_key_file, write_key_file

log = structlog.get_logger("baton.keys")

Transform = Callable[[list[Jwk]], tuple[list[Jwk], list[KeyChange]]]


async def apply_key_change(
    path: str | Path, store: EventStore, transform: Transform, now: float, *, blocking: bool = True
) -> Sequence[KeyChange]:
    """Read the key file, ``transform`` it, record the changes, write it back (all under the lock).

    The new key set is loaded as a :class:`KeyRing` first: a set no instance could load (a damaged
    entry, a disallowed alg) is refused with :class:`LifecycleError` and neither recorded nor written.
    """
    with key_file_lock(path, blocking=blocking):
        keys, changes = transform(read_key_file(path))
        if changes:
            try:
                KeyRing(keys)
            except KeyError_ as exc:
                raise LifecycleError(f"the changed key file would not load: {exc}") from exc
            await record_changes(store, changes, now)
            write_key_file(path, keys)
    return changes


class KeyScheduler(Periodic):
    """Runs the automatic rotation schedule every ``interval`` seconds (one instance wins each round)."""

    task_name = "baton-key-schedule"

    def __init__(self, config: Config, store: EventStore, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._max_lifetime = max_token_lifetime(config)
        self.period = config.signing.reload_seconds

    async def tick(self) -> Sequence[KeyChange]:
        """One round of the schedule; returns what changed (nothing when another writer holds the lock)."""
        now = self._clock()
        signing = self._config.signing
        try:
            changes = await apply_key_change(
                signing.keys, self._store,
                lambda keys: scheduled(keys, now, signing, self._max_lifetime), now, blocking=False,
            )
        except KeyFileBusy:
            return ()
        for change in changes:
            log.info("signing_key_changed", kid=change.kid, state=change.state, by="schedule")
        return changes

    async def round(self) -> None:
        """One tick; failures are logged and retried next round."""
        try:
            await self.tick()
        except (StoreError, OSError) as exc:  # store down or file read-only: try again next round
            log.warning("key_schedule_failed", error=type(exc).__name__, detail=str(exc)[:200])
        except Exception as exc:
            log.error("key_schedule_failed", error=type(exc).__name__, detail=str(exc)[:200])
