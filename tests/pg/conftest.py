"""PostgreSQL-only fixtures: a flaky proxy in front of the test server."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from .proxy import FlakyProxy


@pytest.fixture
async def proxy(pg_dsn: str):
    """A proxy to the test server, and the test DSN rewritten to go through it."""
    parts = urlsplit(pg_dsn)
    p = FlakyProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await p.start()
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    netloc = f"{userinfo}127.0.0.1:{p.port}"
    p.dsn = urlunsplit(parts._replace(netloc=netloc))  # type: ignore[attr-defined]
    yield p
    p.frozen = False
    await p.stop()
