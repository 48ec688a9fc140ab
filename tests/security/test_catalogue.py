"""Every row of the attack catalogue against one running Baton: refused exactly, recorded, nothing signed.

For each case: the response has the catalogue's status and ``error`` (an RFC
6749 §5.2 JSON body, never cached, no token in it); the events written while
the request ran hold no ``TokenExchanged`` and exactly one denial
(``ExchangeDenied``, or ``ClientAuthFailed`` for client authentication) with
the case's request id and ``reason``; and the case's network rules hold (an
untrusted ``iss`` causes no outbound fetch at all).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable

import contextlib
import uuid

import httpx
import pytest
import pytest_asyncio

from tests.conftest import PG_URL, unreachable

from .catalogue import CASES, Case
from .requests import Req
from .world import World

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """One Baton for the whole catalogue, on each event store backend (PostgreSQL fails under CI when down)."""
    async with throwaway_store(request.param) as store_url:
        async with World(tmp_path_factory.mktemp("catalogue"), store_url) as started:
            yield started


@contextlib.asynccontextmanager
async def throwaway_store(backend: str) -> AsyncIterator[str | None]:
    """None for SQLite (the World's own file), else a DSN on a throwaway PostgreSQL schema."""
    if backend == "sqlite":
        yield None
        return
    import asyncpg

    schema = f"sec_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        unreachable("PostgreSQL", exc)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}search_path={schema}"
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def _request_id(case: Case) -> str:
    return "sec-" + re.sub(r"[^A-Za-z0-9._:-]", "-", case.id)[:100]


async def send(world: World, req: Req, request_id: str) -> httpx.Response:
    """Send a catalogue request to Baton."""
    headers = {**req.headers, "x-request-id": request_id}
    kwargs: dict = {"headers": headers}
    if req.auth is not None:
        kwargs["auth"] = req.auth
    if req.chunks is not None:
        async def body() -> AsyncIterator[bytes]:
            for chunk in req.chunks or []:
                yield chunk
        kwargs["content"] = body()
    elif req.content is not None:
        kwargs["content"] = req.content
    else:
        kwargs["data"] = dict(req.form or []) if _unique(req.form or []) else None
        if kwargs["data"] is None:
            kwargs.pop("data")
            kwargs["content"] = httpx.QueryParams(req.form or []).__str__().encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
    return await world.http.post(req.path, **kwargs)


def _unique(pairs: list[tuple[str, str]]) -> bool:
    return len({k for k, _ in pairs}) == len(pairs)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_attack_is_refused_and_recorded(world: World, case: Case) -> None:
    """The attack gets its exact status and error, one denial event with its reason, and no token."""
    built = case.build(world)
    req = await built if isinstance(built, Awaitable) else built
    request_id = _request_id(case)
    head = await world.head()
    fetches_before = world.router.total
    untouched_before = {host: world.router.counts.get(host, 0) for host in case.untouched}

    response = await send(world, req, request_id)

    assert response.status_code == case.status, response.text
    body = response.json()
    assert body["error"] == case.error, body
    assert isinstance(body.get("error_description"), str) and body["error_description"]
    assert "access_token" not in body
    assert response.headers["cache-control"] == "no-store"
    records = await world.events_after(head)
    assert not [r for r in records if r.event_type == "TokenExchanged"], "a refused request must sign nothing"
    expected_type = "ClientAuthFailed" if case.error == "invalid_client" else "ExchangeDenied"
    denials = [r.event for r in records if r.event_type == expected_type and r.event.request_id == request_id]
    assert len(denials) == 1, [r.event_type for r in records]
    assert denials[0].reason == case.reason
    if case.max_fetches is not None:
        assert world.router.total - fetches_before <= case.max_fetches, world.router.counts
    for host in case.untouched:
        assert world.router.counts.get(host, 0) == untouched_before[host], f"Baton fetched from {host}"

