"""Conditional appends: a TokenExchanged carrying an ExchangeCondition is refused, and nothing written, when a
committed revocation covers it — judged under the store's write lock, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import NO_STREAM, AppendRefused, ClientRevoked, SubjectRevoked, TokenRevoked
from projections.lineage import ExchangeCondition, LineageReader, PresentedToken
from tests.lineage.builders import IDP, chain, exchanged

PARTNER = "https://partner.example.com"


def presented(role: str, sub: str, iat: float | None, iss: str = IDP) -> PresentedToken:
    return PresentedToken(role=role, iss=iss, sub=sub, issued_at=iat)


async def issue_if(store, event, *tokens: PresentedToken):
    return await store.append(f"token-{event.issued_jti}", [event], expected_version=NO_STREAM,
                              condition=ExchangeCondition(presented=tokens))


async def refusal(store, event, *tokens: PresentedToken) -> str:
    head = await store.head()
    with pytest.raises(AppendRefused) as refused:
        await issue_if(store, event, *tokens)
    assert await store.head() == head  # nothing was written
    assert await LineageReader(store).get(event.issued_jti) is None
    return refused.value.reason


async def test_a_subject_token_issued_before_its_subjects_revocation_is_refused(store):
    """alice revoked before T: her token issued before T is refused (subject_revoked), one issued after T is not."""
    await store.append("subject", [SubjectRevoked(at=1_500.0, iss=IDP, sub="alice", before=1_500.0, by="ops")])
    assert await refusal(store, exchanged("old", issued_at=1_600), presented("subject", "alice", 1_400)) == "subject_revoked"
    (record,) = await issue_if(store, exchanged("new", issued_at=1_600), presented("subject", "alice", 1_550))
    assert record.note is None and not (await LineageReader(store).get("new")).revoked


async def test_a_token_without_iat_is_covered_by_any_revocation_of_its_subject(store):
    """No iat means the token may be from before the revocation: refused."""
    await store.append("subject", [SubjectRevoked(at=1_500.0, iss=IDP, sub="alice", before=1_500.0, by="ops")])
    assert await refusal(store, exchanged("x", issued_at=1_600), presented("subject", "alice", None)) == "subject_revoked"


async def test_an_actor_tokens_revoked_subject_refuses_the_exchange(store):
    """The actor's subject (another issuer's service) revoked: actor_revoked, the subject itself is fine."""
    await store.append("subject", [SubjectRevoked(at=1_500.0, iss=PARTNER, sub="svc-x", before=1_500.0, by="ops")])
    reason = await refusal(store, exchanged("x", issued_at=1_600), presented("subject", "alice", 1_550),
                           presented("actor", "svc-x", 1_400, iss=PARTNER))
    assert reason == "actor_revoked"


async def test_same_subject_at_another_issuer_is_not_covered(store):
    """A revocation names an issuer and a subject: the same sub from another issuer passes."""
    await store.append("subject", [SubjectRevoked(at=1_500.0, iss=PARTNER, sub="alice", before=1_500.0, by="ops")])
    await issue_if(store, exchanged("x", issued_at=1_600), presented("subject", "alice", 1_400))
    assert not (await LineageReader(store).get("x")).revoked


async def test_revoked_parent_or_client_refuses_as_a_race(store):
    """A revoked parent token, or a client revoked past the exchange's instant: revoked_during_exchange."""
    await chain(store, "A")
    await store.append("token-A", [TokenRevoked(at=2_000.0, jti="A", by="ops")])
    assert await refusal(store, exchanged("B", ("A", "A", 1), issued_at=2_100)) == "revoked_during_exchange"
    await store.append("client", [ClientRevoked(at=2_000.0, client_id="svc-z", before=3_000.0, by="ops")])
    assert await refusal(store, exchanged("C", client="svc-z", issued_at=2_100)) == "revoked_during_exchange"


async def test_refused_appends_do_not_fail_the_rest_of_their_batch(store):
    """Concurrent conditional appends share a batch: only the covered one is refused, the others commit."""
    await store.append("subject", [SubjectRevoked(at=1_500.0, iss=IDP, sub="mallory", before=1_500.0, by="ops")])
    results = await asyncio.gather(
        *(issue_if(store, exchanged(f"ok{i}", sub=f"user{i}", issued_at=1_600), presented("subject", f"user{i}", 1_400))
          for i in range(8)),
        issue_if(store, exchanged("bad", sub="mallory", issued_at=1_600), presented("subject", "mallory", 1_400)),
        return_exceptions=True,
    )
    assert all(not isinstance(r, BaseException) for r in results[:8])
    assert isinstance(results[8], AppendRefused) and results[8].reason == "subject_revoked"
    reader = LineageReader(store)
    rows = [await reader.get(f"ok{i}") for i in range(8)]
    assert all(row is not None and not row.revoked for row in rows)
    assert await reader.get("bad") is None


async def test_a_condition_no_projection_can_judge_is_refused(tmp_path):
    """Fail closed: on a store without the lineage projection, a conditional append writes nothing."""
    from eventstore import open_store

    bare = open_store(f"sqlite:///{tmp_path}/bare.db")
    await bare.open()
    try:
        with pytest.raises(AppendRefused) as refused:
            await issue_if(bare, exchanged("x", issued_at=1_600))
        assert refused.value.reason == "condition_not_judged"
        assert await bare.read_all() == []
    finally:
        await bare.close()


async def test_a_retried_append_gets_the_born_revoked_note_again(store):
    """An append retried with the same event ids (lost connection at COMMIT) returns the stored record, and with it
    the note it got the first time: a token born revoked is never handed out on the retry either."""
    await chain(store, "A")
    await store.append("token-A", [TokenRevoked(at=2_000.0, jti="A", by="ops")])
    child = exchanged("B", ("A", "A", 1))
    (first,) = await store.append("token-B", [child], expected_version=NO_STREAM, event_ids=["x-B"])
    (again,) = await store.append("token-B", [child], expected_version=NO_STREAM, event_ids=["x-B"])
    assert first.note == again.note == "born_revoked"
    assert again.position == first.position


async def test_a_retried_append_of_a_token_revoked_later_has_no_note(store):
    """Revoked only after it was issued, the token was a good exchange: its retry carries no note."""
    event = exchanged("C", issued_at=1_600)
    (first,) = await store.append("token-C", [event], expected_version=NO_STREAM, event_ids=["x-C"])
    await store.append("token-C", [TokenRevoked(at=2_000.0, jti="C", by="ops")])
    (again,) = await store.append("token-C", [event], expected_version=NO_STREAM, event_ids=["x-C"])
    assert first.note is None and again.note is None
    assert (await LineageReader(store).get("C")).revoked


@pytest.mark.parametrize("role", ["subject", "actor"])
async def test_a_subject_revocation_ahead_in_the_same_batch_refuses_the_exchange(store, role):
    """One group commit: bob's revocation is queued first, then an exchange presenting a token of bob's issued
    before the cut (as subject or as actor). The revocation lands; the exchange is refused and writes nothing."""
    revocation = store.append("subject-bob", [SubjectRevoked(at=1_700.0, iss=IDP, sub="bob", before=1_650.0, by="ops")])
    exchange = issue_if(store, exchanged("late", issued_at=1_700, sub="carol"), presented(role, "bob", 1_600))
    revoked, refused = await asyncio.gather(revocation, exchange, return_exceptions=True)
    assert isinstance(revoked, list) and revoked[0].event_type == "SubjectRevoked"
    assert isinstance(refused, AppendRefused) and refused.reason == f"{role}_revoked"
    assert await LineageReader(store).get("late") is None
    assert [r.event_type for r in await store.read_all()] == ["SubjectRevoked"]


async def test_a_revocation_of_someone_else_in_the_same_batch_refuses_nothing(store):
    """Only a cut of the presented token's own subject counts; a token issued after the cut passes too."""
    others = store.append("subject-dave", [SubjectRevoked(at=1_700.0, iss=IDP, sub="dave", before=1_650.0, by="ops")])
    cut = store.append("subject-bob", [SubjectRevoked(at=1_700.0, iss=IDP, sub="bob", before=1_650.0, by="ops")])
    fine = issue_if(store, exchanged("fine", issued_at=1_700, sub="carol"), presented("actor", "erin", 1_600))
    fresh = issue_if(store, exchanged("fresh", issued_at=1_700, sub="carol"), presented("actor", "bob", 1_660))
    results = await asyncio.gather(others, cut, fine, fresh)
    assert [r[0].event_type for r in results] == ["SubjectRevoked", "SubjectRevoked", "TokenExchanged", "TokenExchanged"]


@pytest.mark.postgres
async def test_on_postgresql_the_revocation_lookup_shares_the_state_read(pg_dsn, monkeypatch):
    """Under the write lock a conditional exchange costs one read on PostgreSQL: the store's state and the
    lineage's revocation lookup travel in one statement, with the same verdicts as when read apart."""
    from eventstore.postgres import PostgresEventStore, _PgTx
    from projections.lineage import LineageProjection

    store = PostgresEventStore(pg_dsn, [LineageProjection()])
    await store.open()
    try:
        await store.append("subject-x", [SubjectRevoked(at=1_700_000_100.0, iss=IDP, sub="bob", before=1_700_000_050.0, by="t")])
        reads: list[str] = []
        original = _PgTx.fetch

        async def counting(self, sql, *args):
            reads.append(sql)
            return await original(self, sql, *args)

        monkeypatch.setattr(_PgTx, "fetch", counting)
        assert await refusal(store, exchanged("j-bob", sub="bob"), presented("subject", "bob", 1_700_000_000.0)) == "subject_revoked"
        await issue_if(store, exchanged("j-alice"), presented("subject", "alice", 1_700_000_000.0))
        assert (await LineageReader(store).get("j-alice")) is not None
        assert len(reads) == 2 and all(sql.startswith("SELECT ARRAY(") for sql in reads)
    finally:
        await store.close()
