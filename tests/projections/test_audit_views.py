"""What each audit view holds after the runner applied the log."""

from __future__ import annotations

from projections.audit import AuditProjection, act_chain
from projections.runner import ProjectionRunner
from tests.projections.workload import IDP, Workload, append


async def _project(store, events) -> None:
    await append(store, events)
    runner = ProjectionRunner(store, [AuditProjection()])
    await runner.setup()
    await runner.catch_up()


async def test_exchange_row_keeps_who_for_whom_chain_and_scopes(store):
    """One row per TokenExchanged with subject, client, chain links, depth, audience, scope and expiry."""
    w = Workload()
    root = w.exchange(audience=["api", "orders"], scope=["read", "write"])
    child = w.exchange(parent=root, actor="svc-b", client="svc-b")
    await _project(store, [root, child])
    got = await store.fetch(
        "SELECT position, client_id, kind, subject_iss, subject_sub, issued_jti, parent_jti, root_jti, depth, "
        "audience, scope, expires_at, act FROM audit_exchanges ORDER BY position"
    )
    assert got[0][:10] == (1, "web", "delegation", IDP, "alice", root.issued_jti, None, root.issued_jti, 1, "api orders")
    assert got[0][10:12] == ("read write", root.expires_at)
    assert got[1][5:9] == (child.issued_jti, root.issued_jti, root.issued_jti, 2)
    assert got[1][12] == '{"sub":"svc-b"}'


async def test_every_actor_of_the_act_chain_is_indexed(store):
    """Each actor anywhere in `act` gets a row (outermost = nesting 0), so "by any actor" finds nested ones."""
    w = Workload()
    a = w.exchange()
    b = w.exchange(parent=a, actor="svc-b")
    c = w.exchange(parent=b, actor="svc-c")
    await _project(store, [a, b, c])
    got = await store.fetch("SELECT position, nesting, actor_sub FROM audit_exchange_actors ORDER BY position, nesting")
    assert got == [(2, 0, "svc-b"), (3, 0, "svc-c"), (3, 1, "svc-b")]


def test_act_chain_walks_nested_claims_and_stops_at_a_bound():
    """`act_chain` lists actors outermost first with their issuer, ignores junk, and caps absurd nesting."""
    assert act_chain({"sub": "b", "iss": "https://x", "act": {"sub": "a"}}) == [("https://x", "b"), ("", "a")]
    assert act_chain({"act": "junk"}) == []
    deep: dict = {"sub": "s"}
    for _ in range(500):
        deep = {"sub": "s", "act": deep}
    assert len(act_chain(deep)) == 64


async def test_denied_view_holds_refusals_and_client_auth_failures_with_reasons(store):
    """ExchangeDenied and ClientAuthFailed land in `audit_denied` with their machine reason."""
    w = Workload()
    await _project(store, [w.denied(reason="depth_exceeded"), w.auth_failed(client="mallory", reason="bad_secret")])
    got = await store.fetch("SELECT event, client_id, error, reason, subject_sub FROM audit_denied ORDER BY position")
    assert got == [
        ("ExchangeDenied", "web", "invalid_request", "depth_exceeded", "alice"),
        ("ClientAuthFailed", "mallory", "invalid_client", "bad_secret", None),
    ]


async def test_revocations_view_holds_token_subject_and_client_revocations(store):
    """TokenRevoked, SubjectRevoked and ClientRevoked each become one row of their kind."""
    w = Workload()
    await _project(store, [w.revoke_token("tok-9", cascade=False), w.revoke_subject("bob"), w.revoke_client("web")])
    got = await store.fetch(
        "SELECT kind, jti, cascades, subject_sub, client_id, revoked_by FROM audit_revocations ORDER BY position"
    )
    assert got == [
        ("token", "tok-9", 0, None, None, "admin"),
        ("subject", None, 1, "bob", None, "admin"),
        ("client", None, 1, None, "web", "admin"),
    ]


async def test_subject_summary_counts_and_first_last_seen(store):
    """Per subject: exchanges, denied attempts, subject revocations, and first/last time seen."""
    w = Workload()
    a = w.exchange()
    events = [a, w.exchange(parent=a, actor="svc"), w.denied(), w.exchange(sub="bob"), w.revoke_subject("alice")]
    await _project(store, events)
    got = await store.fetch(
        "SELECT subject_sub, exchanges, denied, revocations, first_seen, last_seen FROM audit_subjects ORDER BY 1"
    )
    assert got == [("alice", 2, 1, 1, a.at, events[-1].at), ("bob", 1, 0, 0, events[3].at, events[3].at)]


async def test_applying_the_same_batch_twice_changes_nothing(store):
    """Apply is idempotent: re-applying a batch (as a replay would) neither duplicates rows nor recounts."""
    w = Workload()
    await append(store, [w.exchange(), w.denied(), w.revoke_subject("alice")])
    records = await store.read_all()
    projection = AuditProjection()
    async with store.transaction() as tx:
        for ddl in projection.schema(tx.dialect):
            await tx.execute(ddl)
    for _ in range(2):
        async with store.transaction() as tx:
            await projection.apply(tx, records)
    assert await store.fetch("SELECT exchanges, denied, revocations FROM audit_subjects") == [(1, 1, 1)]
    assert await store.fetch("SELECT COUNT(*) FROM audit_exchanges") == [(1,)]
