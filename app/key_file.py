"""The shared key file: an exclusive lock for writers, and a watcher that reloads it safely.

Every instance polls the file's (inode, size, mtime) every ``reload_seconds``.
A change is read whole (writers replace the file atomically), parsed into a new
:class:`~app.keys.KeyRing` and swapped in with one assignment, so a request sees
either the old ring or the new one. A file that does not parse, or holds no
active key, keeps the old ring and is logged once as an error.

Writers (``baton keys …``, the automatic schedule) take ``flock`` on a sibling
``.lock`` file, so two instances never both rotate.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from .periodic import Periodic
from .keys import KeyRing, read_key_file
from .metrics import KEY_RELOADS

log = structlog.get_logger("baton.keys")

Signature = tuple[int, int, int]


class KeyFileBusy(Exception):
    """Another writer holds the key-file lock."""


@contextlib.contextmanager
def key_file_lock(path: str | Path, *, blocking: bool = True) -> Iterator[None]:
    """Hold the exclusive writer lock of ``path`` (raise :class:`KeyFileBusy` when not ``blocking`` and taken)."""
    lock_path = Path(str(path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError as exc:
            raise KeyFileBusy(str(lock_path)) from exc
        yield
    finally:
        os.close(fd)  # closing releases the lock


def file_signature(path: str | Path) -> Signature | None:
    """(inode, size, mtime ns) of ``path`` (following symlinks, as Kubernetes Secret volumes use), or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class KeyFileWatcher(Periodic):
    """Polls the key file and hands each good new :class:`KeyRing` to ``adopt``."""

    task_name = "baton-key-watcher"

    def __init__(self, path: str | Path, adopt: Callable[[KeyRing], None], interval: float) -> None:
        self._path = Path(path)
        self._adopt = adopt
        self.period = interval
        self._seen = file_signature(self._path)

    def check(self) -> bool:
        """Reload when the file changed; True when a new ring was adopted."""
        signature = file_signature(self._path)
        if signature is None or signature == self._seen:
            return False
        self._seen = signature
        try:
            ring = KeyRing(read_key_file(self._path))
        except Exception as exc:  # any damage (bad JSON, bad JWK, no active key): keep the old ring
            KEY_RELOADS.labels("failed").inc()
            log.error("signing_keys_reload_failed", path=str(self._path), error=type(exc).__name__, detail=str(exc)[:200])
            return False
        self._adopt(ring)
        KEY_RELOADS.labels("ok").inc()
        log.info("signing_keys_reloaded", kid=ring.kid, published=[k["kid"] for k in ring.public_jwks["keys"]])
        return True

    async def round(self) -> None:
        """One poll of the key file."""
        try:
            self.check()
        except Exception as exc:  # never let the watcher die: the old ring keeps serving
            log.error("signing_keys_reload_failed", path=str(self._path), error=type(exc).__name__)
