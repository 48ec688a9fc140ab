"""Fault scenarios of ``ops/faults.py`` at small scale, against real ``baton serve`` processes.

After every scenario the scenario itself has checked the event log: every token
a client received has exactly one ``TokenExchanged`` event (by SHA-256),
positions are contiguous and the hash chain verifies; ``result.ok`` is false
otherwise. The facts are in the assertion message when a scenario fails.
"""

from __future__ import annotations

from ops.faults import run_scenario


async def test_postgres_sessions_killed_mid_load(tmp_path, postgres) -> None:
    """Terminated PostgreSQL sessions give only 200 or 503 with Retry-After; exchanges recover by themselves."""
    result = await run_scenario("pg-kill", 1, tmp_path)
    assert result.ok, result.facts


async def test_postgres_unreachable_mid_load(tmp_path, postgres) -> None:
    """While PostgreSQL is unreachable /token answers 503 with Retry-After; afterwards every request succeeds."""
    result = await run_scenario("pg-outage", 1, tmp_path)
    assert result.ok, result.facts
    assert result.facts["503"] > 0 and result.facts["after"] > 0


async def test_redis_killed_mid_load(tmp_path, redis_binary) -> None:
    """Redis killed: exchanges go on, no assertion replay is accepted before, during or after; recovery on restart."""
    result = await run_scenario("redis-down", 1, tmp_path)
    assert result.ok, result.facts
    assert result.facts["replay_statuses"] == [200, 200, 401, 401, 401]


async def test_issuer_jwks_slow_down_rotating(tmp_path) -> None:
    """Cached keys serve through a slow and a down issuer, a rotated key is picked up, a kid storm fetches ≤ 1."""
    result = await run_scenario("jwks", 1, tmp_path)
    assert result.ok, result.facts


async def test_two_instances_one_restarted(tmp_path, postgres, redis_binary) -> None:
    """Two instances on one PostgreSQL and Redis, one restarted under load: no failed request, one valid chain."""
    result = await run_scenario("two-instances", 1, tmp_path)
    assert result.ok, result.facts


async def test_graceful_shutdown(tmp_path) -> None:
    """SIGTERM: /readyz 503 while still serving, then the listener closes, and the in-flight request completes."""
    result = await run_scenario("graceful", 1, tmp_path)
    assert result.ok, result.facts


async def test_slow_clients_and_huge_headers_are_cut_off(tmp_path) -> None:
    """A client that stops mid-request is disconnected within read_timeout + keep_alive_timeout; 64 KiB of headers is refused."""
    result = await run_scenario("slow-clients", 1, tmp_path)
    assert result.ok, result.facts


def test_broken_pooled_connection_is_a_store_outage() -> None:
    """asyncpg's InternalClientError (a connection whose backend was killed mid-operation) counts as transient: 503, not 500."""
    import asyncpg

    from eventstore.postgres import is_transient

    assert is_transient(asyncpg.exceptions.InternalClientError("cannot switch to state 12"))
