"""A batch written in one call of the lineage's function ends exactly as the classic write would end it.

Two stores on two schemas start from the same log (revoked subjects and clients, parent
tokens, some of them revoked) and then write the same batch, one in one statement
(``baton_append_exchanges``), the other the classic way: every append gets the same
record (position, hashes) or the same refusal, and the lineage and the chain are equal.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import NO_STREAM, AppendRefused, ClientRevoked, ExchangeDenied, SubjectRevoked, TokenRevoked
from eventstore.base import _canonical
from eventstore.batch import PendingAppend
from eventstore.hashing import chain_hash, record_bytes
from eventstore.postgres import PostgresEventStore
from eventstore.types import GENESIS_HASH
from projections.lineage import ExchangeCondition, LineageProjection, LineageReader, PresentedToken
from tests.conftest import PG_URL
from tests.lineage.builders import IDP, exchanged

pytestmark = pytest.mark.postgres

SUBS = ["alice", "bob", "carol"]
CLIENTS = ["svc-a", "svc-b"]
PARENTS = ["p-1", "p-2", "p-3"]  # p-1 → p-2 → p-3, each issued at 1_000 by svc-a for alice
AT = 1_700.0
CLOCK = 2_000.25


@pytest.fixture
async def twins(pg_dsn):
    """Two stores with the lineage on two schemas: one writing batches in one statement, one the classic way."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_URL, timeout=5)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    stores = [
        PostgresEventStore(dsn, [LineageProjection()], one_statement=one, clock=lambda: CLOCK)
        for dsn, one in ((pg_dsn, True), (f"{PG_URL}{sep}search_path={schema}", False))
    ]
    try:
        for store in stores:
            await store.open()
        yield stores
    finally:
        for store in stores:
            await store.close()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


class _Names:
    """One example's names: every example writes its own subjects, clients and tokens into the same log."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]

    def __call__(self, name: str) -> str:
        return f"{self.tag}-{name}"


def _pending(stream: str, event, condition=None) -> PendingAppend:
    data, decoded = _canonical(event)
    future = asyncio.get_running_loop().create_future()
    return PendingAppend(stream, [decoded], [f"x-{stream}"], NO_STREAM, future, data=[data], condition=condition)


_presented = st.tuples(
    st.sampled_from(["subject", "actor"]),
    st.sampled_from([IDP, "https://other.example.com"]),
    st.sampled_from(SUBS),
    st.one_of(st.none(), st.sampled_from([900.0, 1_100.0, 1_650.0, 1_800.0])),
)
_exchange = st.tuples(
    st.just("exchange"),
    st.sampled_from(SUBS),
    st.sampled_from(CLIENTS),
    st.one_of(st.none(), st.sampled_from(PARENTS)),
    st.lists(_presented, max_size=3),
    st.sampled_from([1_500.0, 1_700.0, 1_900.0]),  # when the exchange happened, against the cuts below
)
_denial = st.tuples(st.just("denial"), st.sampled_from(SUBS))
_prior = st.tuples(
    st.lists(st.tuples(st.sampled_from([IDP, "https://other.example.com"]), st.sampled_from(SUBS),
                       st.sampled_from([1_000.0, 1_600.0, 1_800.0])), max_size=3),
    st.lists(st.tuples(st.sampled_from(CLIENTS), st.sampled_from([1_600.0, 1_800.0])), max_size=2),
    st.lists(st.sampled_from(PARENTS), max_size=2, unique=True),  # revoked parent tokens (with their descendants)
)


def _batch(appends, name: _Names) -> list[PendingAppend]:
    batch = []
    for number, append in enumerate(appends):
        if append[0] == "denial":
            denial = ExchangeDenied(at=AT, request_id=f"r{number}", error="invalid_grant", reason="bad_token",
                                    description="x", subject_sub=name(append[1]))
            batch.append(_pending(name(f"denied-{number}"), denial))
            continue
        _, sub, client, parent, presented, at = append
        lineage = None if parent is None else (name(parent), name("p-1"), PARENTS.index(parent) + 1)
        event = msgspec.structs.replace(
            exchanged(name(f"j-{number}"), lineage, sub=name(sub), client=name(client), issued_at=1_700), at=at,
            request_id=f"r{number}",  # the same event for both stores
        )
        tokens = tuple(PresentedToken(role=r, iss=i, sub=name(s), issued_at=t) for r, i, s, t in presented)
        batch.append(_pending(name(f"token-j-{number}"), event, ExchangeCondition(presented=tokens)))
    return batch


def _outcome(batch: list[PendingAppend]) -> list[object]:
    return [
        ("refused", str(item.error)) if isinstance(item.error, AppendRefused)
        else (type(item.error).__name__ if item.error is not None else
              [(r.position, r.stream_id, r.stream_version, r.event_id, r.recorded_at, r.data, r.prev_hash, r.hash)
               for r in item.result or []])
        for item in batch
    ]


async def _prepare(store: PostgresEventStore, prior, name: _Names) -> None:
    subjects, clients, revoked_parents = prior
    parent = None
    for depth, jti in enumerate(PARENTS, start=1):
        token = msgspec.structs.replace(
            exchanged(name(jti), parent, sub=name("alice"), client=name("svc-a"), issued_at=1_000), request_id=jti
        )
        await store.append(name(f"token-{jti}"), [token], expected_version=NO_STREAM, event_ids=[name(jti)])
        parent = (name(jti), name("p-1"), depth)
    for n, (iss, sub, before) in enumerate(subjects):
        revoked = SubjectRevoked(at=AT - 1, iss=iss, sub=name(sub), before=before, by="ops")
        await store.append(name(f"subject-{n}"), [revoked], event_ids=[name(f"s{n}")])
    for n, (client, before) in enumerate(clients):
        revoked = ClientRevoked(at=AT - 1, client_id=name(client), before=before, by="ops")
        await store.append(name(f"client-{n}"), [revoked], event_ids=[name(f"c{n}")])
    for jti in revoked_parents:
        await store.append(name(f"revoke-{jti}"), [TokenRevoked(at=AT - 1, jti=name(jti), by="ops")],
                           event_ids=[name(f"r-{jti}")])


async def _chain_holds(store: PostgresEventStore) -> bool:
    prev = GENESIS_HASH
    for record in await store.read_all(1, 100_000):
        expected = chain_hash(prev, record.position, record_bytes(
            record.stream_id, record.stream_version, record.event_id, record.recorded_at, record.data))
        if record.prev_hash != prev or record.hash != expected:
            return False
        prev = record.hash
    return True


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prior=_prior, appends=st.lists(st.one_of(_exchange, _denial), min_size=1, max_size=6))
async def test_one_statement_and_classic_batches_end_alike(twins, prior, appends) -> None:
    name = _Names()
    outcomes, lineages, heads, used = [], [], [], []
    for store in twins:
        await _prepare(store, prior, name)
        batch = _batch(appends, name)
        used.append(await store._write_in_one_statement(store._one_statement, batch) if store._one_statement
                    else await store._flush(batch))
        outcomes.append(_outcome(batch))
        lineages.append(await LineageReader(store).rows())
        heads.append(await store.head())
    assert used[0] is True  # the batch went as one statement, not the classic way
    assert outcomes[0] == outcomes[1]
    assert lineages[0] == lineages[1]
    assert heads[0] == heads[1]


async def test_the_hash_chain_the_function_extends_is_the_chain_python_checks(twins) -> None:
    """SHA-256 over prev ‖ position ‖ envelope ‖ data in SQL is the chain the verifier recomputes."""
    one, _ = twins
    name = _Names()
    await _prepare(one, ([], [], []), name)
    batch = _batch([("exchange", "bob", "svc-b", None, [], 1_700.0), ("denial", "carol"),
                    ("exchange", "alice", "svc-a", "p-3", [("subject", IDP, "alice", 1_100.0)], 1_700.0)], name)
    assert await one._write_in_one_statement(one._one_statement, batch) is True
    assert all(item.error is None for item in batch)
    assert await _chain_holds(one)
