"""The lineage projection: parents, depth, cascading revocation, replay equality."""

from __future__ import annotations

import asyncio
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import ClientRevoked, SubjectRevoked, TokenRevoked
from projections.lineage import LineageProjection, LineageReader
from projections.rebuild import rebuild_inline
from tests.lineage.builders import IDP, chain, exchanged, issue


async def test_chain_records_parent_root_and_depth(store):
    """A→B→C: each token knows its parent, the root of the chain and its depth."""
    await chain(store, "A", "B", "C")
    reader = LineageReader(store)
    a, b, c = [await reader.get(j) for j in "ABC"]
    assert (a.parent_jti, a.root_jti, a.depth) == (None, "A", 1)
    assert (b.parent_jti, b.root_jti, b.depth) == ("A", "A", 2)
    assert (c.parent_jti, c.root_jti, c.depth) == ("B", "A", 3)
    assert c.origin_iss == IDP and c.origin_sub == "alice"
    assert await reader.get("unknown") is None


async def test_revoking_a_token_revokes_its_descendants_not_its_ancestors(store):
    """Revoke B in A→B→C: B directly, C through its ancestor, A stays active."""
    await chain(store, "A", "B", "C")
    await store.append("token-B", [TokenRevoked(at=2_000.0, jti="B", by="ops", reason="leak")])
    reader = LineageReader(store)
    a, b, c = [await reader.get(j) for j in "ABC"]
    assert not a.revoked
    assert b.revoked and b.revoked_direct and b.revoked_by == "ops" and b.revoked_reason == "leak"
    assert c.revoked and c.revoked_direct is False and c.revoked_at == 2_000.0


async def test_non_cascading_revocation_spares_descendants(store):
    """cascade=false revokes only the named token."""
    await chain(store, "A", "B")
    await store.append("token-A", [TokenRevoked(at=2_000.0, jti="A", by="ops", cascade=False)])
    reader = LineageReader(store)
    assert (await reader.get("A")).revoked and not (await reader.get("B")).revoked


async def test_cascade_walks_through_a_token_revoked_without_cascade(store):
    """A→B→C: B revoked alone, then A with cascade — C is revoked too (the walk passes B)."""
    await chain(store, "A", "B", "C")
    await store.append("token-B", [TokenRevoked(at=2_000.0, jti="B", by="ops", cascade=False)])
    assert not (await LineageReader(store).get("C")).revoked
    await store.append("token-A", [TokenRevoked(at=2_100.0, jti="A", by="ops")])
    c = await LineageReader(store).get("C")
    assert c.revoked and c.revoked_at == 2_100.0 and c.revoked_direct is False


async def test_child_appended_after_parent_revocation_is_born_revoked(store):
    """A token exchanged from an already revoked parent (a race, or an unconditional append) is revoked on arrival."""
    await chain(store, "A")
    await store.append("token-A", [TokenRevoked(at=2_000.0, jti="A", by="ops")])
    await issue(store, exchanged("B", ("A", "A", 1)))
    assert (await LineageReader(store).get("B")).revoked


async def test_subject_revocation_cuts_tokens_issued_before_the_instant(store):
    """SubjectRevoked(before=T) revokes alice's tokens issued before T, not later ones nor bob's."""
    await chain(store, "A1", "A2", issued_at=1_000)
    await chain(store, "B1", sub="bob", issued_at=1_000)
    await store.append("subject", [SubjectRevoked(at=1_500.0, iss=IDP, sub="alice", before=1_500.0, by="ops")])
    await chain(store, "A3", issued_at=1_600)
    await issue(store, exchanged("A0", None, issued_at=1_100))  # appended late, issued before the cut
    reader = LineageReader(store)
    assert (await reader.get("A1")).revoked and (await reader.get("A2")).revoked
    assert (await reader.get("A0")).revoked
    assert not (await reader.get("A3")).revoked and not (await reader.get("B1")).revoked
    assert await reader.subject_revoked_before(IDP, "alice") == 1_500.0


async def test_client_revocation_cascades_to_other_clients_descendants(store):
    """ClientRevoked revokes the client's tokens and everything derived from them."""
    await issue(store, exchanged("X", client="svc-a"))
    await issue(store, exchanged("Y", ("X", "X", 1), client="billing"))
    await issue(store, exchanged("Z", client="svc-b"))
    await store.append("client", [ClientRevoked(at=2_000.0, client_id="svc-a", before=2_000.0, by="ops")])
    reader = LineageReader(store)
    assert (await reader.get("X")).revoked and (await reader.get("Y")).revoked
    assert not (await reader.get("Z")).revoked
    assert await reader.client_revoked_before("svc-a") == 2_000.0


async def test_revoking_a_wide_tree_marks_every_descendant(store):
    """A root with 2,000 descendants over several levels is revoked in one event."""
    await issue(store, exchanged("root"))
    level = ["root"]
    count = 0
    for depth in range(1, 4):
        nxt = []
        events = []
        for parent in level:
            for i in range(12 if depth < 3 else 13):
                jti = f"{parent}.{i}"
                events.append(exchanged(jti, (parent, "root", depth)))
                nxt.append(jti)
        await asyncio.gather(*(issue(store, e) for e in events))
        count += len(events)
        level = nxt
    await store.append("token-root", [TokenRevoked(at=3_000.0, jti="root", by="ops")])
    rows = await store.fetch("SELECT COUNT(*) FROM lineage WHERE revoked_at IS NOT NULL")
    assert rows[0][0] == count + 1


async def _live_vs_rebuilt(store) -> None:
    reader = LineageReader(store)
    live = await reader.rows()
    live_subjects = await store.fetch("SELECT * FROM revoked_subjects ORDER BY iss, sub")
    await rebuild_inline(store, LineageProjection(), page=7)
    assert await reader.rows() == live
    assert await store.fetch("SELECT * FROM revoked_subjects ORDER BY iss, sub") == live_subjects


operation = st.one_of(
    st.tuples(st.just("exchange"), st.integers(0, 1000), st.sampled_from(["alice", "bob"]), st.sampled_from(["svc-a", "svc-b"])),
    st.tuples(st.just("revoke"), st.integers(0, 1000), st.booleans()),
    st.tuples(st.just("revoke_subject"), st.sampled_from(["alice", "bob"])),
    st.tuples(st.just("revoke_client"), st.sampled_from(["svc-a", "svc-b"])),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=40))
async def test_rebuild_from_the_log_equals_the_live_projection(store, ops):
    """After random exchanges, chains and revocations, dropping and replaying gives identical rows.

    Examples share one log (events cannot be deleted), so each compares the whole projection.
    """
    run = uuid.uuid4().hex[:8]
    issued: list[tuple[str, str, int]] = []  # (jti, root, depth)
    clock = 1_000
    for op in ops:
        clock += 10
        if op[0] == "exchange":
            parent = issued[op[1] % len(issued)] if issued and op[1] % 3 else None
            jti = f"{run}-t{len(issued)}"
            await issue(store, exchanged(jti, parent, sub=op[2], client=op[3], issued_at=clock))
            root = parent[1] if parent else jti
            issued.append((jti, root, (parent[2] + 1) if parent else 1))
        elif op[0] == "revoke" and issued:
            jti = issued[op[1] % len(issued)][0]
            await store.append(f"token-{jti}", [TokenRevoked(at=float(clock), jti=jti, by="t", cascade=op[2])])
        elif op[0] == "revoke_subject":
            await store.append("s", [SubjectRevoked(at=float(clock), iss=IDP, sub=op[1], before=float(clock - 15), by="t")])
        elif op[0] == "revoke_client":
            await store.append("c", [ClientRevoked(at=float(clock), client_id=op[1], before=float(clock - 15), by="t")])
    await _live_vs_rebuilt(store)
