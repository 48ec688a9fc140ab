"""Rebuild equals live: views caught up batch by batch while the log grows are identical to a replay from 0."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.audit import TABLES, AuditProjection
from projections.runner import ProjectionRunner, rebuild
from tests.projections.workload import Workload, append, rows

_examples = itertools.count()

SUBJECTS = ["alice", "bob", "carol"]
CLIENTS = ["web", "svc-a", "svc-b"]
ACTORS = ["svc-a", "svc-b", "svc-c"]

operation = st.one_of(
    st.tuples(st.just("root"), st.sampled_from(SUBJECTS), st.sampled_from(CLIENTS), st.sampled_from(["api", "orders"])),
    st.tuples(st.just("child"), st.integers(0, 50), st.sampled_from(ACTORS), st.booleans()),
    st.tuples(st.just("deny"), st.sampled_from(SUBJECTS + [None]), st.sampled_from(["depth_exceeded", "revoked"])),
    st.tuples(st.just("auth_failed"), st.sampled_from(CLIENTS)),
    st.tuples(st.just("revoke_token"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("revoke_subject"), st.sampled_from(SUBJECTS)),
    st.tuples(st.just("revoke_client"), st.sampled_from(CLIENTS)),
    st.tuples(st.just("catch_up")),
)


def _events(w: Workload, ops) -> list:
    """Turn operations into events; `catch_up` becomes a marker where the live runner runs."""
    issued, out = [], []
    for op in ops:
        kind = op[0]
        if kind == "root":
            issued.append(w.exchange(sub=op[1], client=op[2], audience=[op[3]]))
            out.append(issued[-1])
        elif kind == "child" and issued:
            parent = issued[op[1] % len(issued)]
            issued.append(w.exchange(parent=parent, actor=op[2], client=op[2], kind="impersonation" if op[3] else "delegation"))
            out.append(issued[-1])
        elif kind == "deny":
            out.append(w.denied(sub=op[1], reason=op[2]))
        elif kind == "auth_failed":
            out.append(w.auth_failed(client=op[1]))
        elif kind == "revoke_token" and issued:
            out.append(w.revoke_token(issued[op[1] % len(issued)].issued_jti, cascade=op[2]))
        elif kind == "revoke_subject":
            out.append(w.revoke_subject(op[1]))
        elif kind == "revoke_client":
            out.append(w.revoke_client(op[1]))
        elif kind == "catch_up":
            out.append(None)
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=40), live_batch=st.integers(1, 7), replay_batch=st.integers(1, 50))
async def test_rebuild_from_zero_equals_live_views(store, ops, live_batch, replay_batch):
    """After a random workload followed live in random batches, a rebuild from 0 yields every row equal."""
    example = next(_examples)
    w = Workload(start=1_800_000_000.0 + example * 10_000)
    live = ProjectionRunner(store, [AuditProjection()], owner=f"live-{example}", batch_size=live_batch)
    await live.setup()
    for event in _events(w, ops):
        if event is None:
            await live.catch_up()
        else:
            await append(store, [event])
    await live.catch_up()
    await live.release()
    live_rows = {table: await rows(store, table) for table in TABLES}
    await rebuild(store, AuditProjection(), batch_size=replay_batch)
    assert {table: await rows(store, table) for table in TABLES} == live_rows
