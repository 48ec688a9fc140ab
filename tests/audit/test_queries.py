"""The audit queries shared by the API and the CLI: every filter, cursors, the delegation tree, the summary."""

from __future__ import annotations

import msgspec
import pytest

from projections import audit_queries as q
from projections.audit import AuditProjection
from projections.runner import ProjectionRunner
from tests.projections.workload import IDP, T0, Workload, append


@pytest.fixture
async def world(store):
    """alice: root → b (svc-b) → c (svc-c); root → d (svc-d); bob: one exchange for `orders`; refusals; revocations."""
    w = Workload()
    root = w.exchange(client="web")
    b = w.exchange(parent=root, actor="svc-b", client="svc-b", audience=["orders"])
    c = w.exchange(parent=b, actor="svc-c", client="svc-c", scope=["read", "write"])
    d = w.exchange(parent=root, actor="svc-d", client="svc-d", kind="impersonation")
    bob = w.exchange(sub="bob", client="mobile", audience=["orders", "api"])
    events = [
        root, b, c, d, bob,
        w.denied(sub="alice", reason="depth_exceeded"),
        w.denied(sub="bob", client="mobile", reason="revoked"),
        w.auth_failed(client="mallory"),
        w.revoke_token(b.issued_jti),
        w.revoke_subject("carol"),
        w.revoke_client("mobile"),
    ]  # fmt: skip
    await append(store, events)
    runner = ProjectionRunner(store, [AuditProjection()])
    await runner.setup()
    await runner.catch_up()
    return store, {"root": root, "b": b, "c": c, "d": d, "bob": bob}


def jtis(page) -> list[str]:
    return [i["issued_jti"] for i in page["items"]]


async def test_exchanges_by_subject(world):
    """Filtering by iss+sub (or sub alone) returns exactly that user's exchanges, in log order."""
    store, t = world
    alice = [t[k].issued_jti for k in ("root", "b", "c", "d")]
    assert jtis(await q.exchanges(store, subject_iss=IDP, subject_sub="alice")) == alice
    assert jtis(await q.exchanges(store, subject_sub="bob")) == [t["bob"].issued_jti]
    assert jtis(await q.exchanges(store, subject_iss="https://other", subject_sub="alice")) == []


async def test_exchanges_by_any_actor_in_the_chain(world):
    """An actor is found where it acted directly and where it sits deeper in a later token's chain."""
    store, t = world
    assert jtis(await q.exchanges(store, actor_sub="svc-b")) == [t["b"].issued_jti, t["c"].issued_jti]
    assert jtis(await q.exchanges(store, actor_sub="svc-c")) == [t["c"].issued_jti]
    assert jtis(await q.exchanges(store, actor_sub="svc-b", actor_iss="https://elsewhere")) == []


async def test_exchanges_by_client_audience_kind_jti(world):
    """Client, one-of-many audience, kind and issued jti each narrow the list; filters combine with AND."""
    store, t = world
    assert jtis(await q.exchanges(store, client_id="svc-d")) == [t["d"].issued_jti]
    assert jtis(await q.exchanges(store, audience="orders")) == [t["b"].issued_jti, t["bob"].issued_jti]
    assert jtis(await q.exchanges(store, audience="orders", subject_sub="bob")) == [t["bob"].issued_jti]
    assert jtis(await q.exchanges(store, kind="impersonation")) == [t["d"].issued_jti]
    assert jtis(await q.exchanges(store, jti=t["c"].issued_jti)) == [t["c"].issued_jti]


async def test_exchanges_by_time_range(world):
    """`since` is inclusive and `until` exclusive, on the event's time."""
    store, t = world
    page = await q.exchanges(store, since=t["b"].at, until=t["d"].at)
    assert jtis(page) == [t["b"].issued_jti, t["c"].issued_jti]


async def test_exchange_item_shape(world):
    """Items carry RFC 3339 times, lists for audience/scope and the decoded `act` chain."""
    store, t = world
    [item] = (await q.exchanges(store, jti=t["c"].issued_jti))["items"]
    assert item["at"] == q.iso(t["c"].at) and item["at"].endswith("Z")
    assert item["scope"] == ["read", "write"] and item["audience"] == ["api"]
    assert item["act"] == {"sub": "svc-c", "act": {"sub": "svc-b"}}
    assert (item["parent_jti"], item["root_jti"], item["depth"]) == (t["b"].issued_jti, t["root"].issued_jti, 3)


async def test_pagination_walks_every_row_once(world):
    """Following `next` as `after` visits every row exactly once; the last page's `next` is None."""
    store, _ = world
    seen, after = [], 0
    while True:
        page = await q.exchanges(store, after=after, limit=2)
        seen += [i["position"] for i in page["items"]]
        if page["next"] is None:
            break
        assert page["next"] == page["items"][-1]["position"]
        after = page["next"]
    assert seen == [1, 2, 3, 4, 5]
    full = await q.exchanges(store, limit=5)
    assert full["next"] is None  # exactly `limit` rows left: no empty extra page


async def test_page_bounds_are_enforced():
    """A negative cursor or a limit outside 1…1000 is refused before any query runs."""
    for after, limit in ((-1, 10), (0, 0), (0, q.MAX_LIMIT + 1)):
        with pytest.raises(ValueError):
            q.check_page(after, limit)


async def test_denied_filters(world):
    """Refusals filter by subject, client, reason and event kind."""
    store, _ = world
    assert [i["reason"] for i in (await q.denied(store))["items"]] == ["depth_exceeded", "revoked", "bad_secret"]
    assert [i["reason"] for i in (await q.denied(store, subject_sub="alice"))["items"]] == ["depth_exceeded"]
    assert [i["reason"] for i in (await q.denied(store, client_id="mobile"))["items"]] == ["revoked"]
    assert [i["client_id"] for i in (await q.denied(store, event="ClientAuthFailed"))["items"]] == ["mallory"]
    assert [i["subject_sub"] for i in (await q.denied(store, reason="revoked"))["items"]] == ["bob"]


async def test_revocation_filters(world):
    """Revocations filter by kind, jti, subject and client."""
    store, t = world
    assert [i["kind"] for i in (await q.revocations(store))["items"]] == ["token", "subject", "client"]
    assert [i["jti"] for i in (await q.revocations(store, kind="token"))["items"]] == [t["b"].issued_jti]
    assert (await q.revocations(store, jti=t["b"].issued_jti))["items"][0]["cascades"] is True
    assert [i["subject_sub"] for i in (await q.revocations(store, subject_sub="carol"))["items"]] == ["carol"]
    assert [i["kind"] for i in (await q.revocations(store, client_id="mobile"))["items"]] == ["client"]


async def test_subject_summary(world):
    """The summary counts a user's exchanges and refusals and names the clients, audiences and actors seen."""
    store, t = world
    summary = await q.subject_summary(store, IDP, "alice")
    assert (summary["exchanges"], summary["denied"], summary["revocations"]) == (4, 1, 0)
    assert summary["first_seen"] == q.iso(t["root"].at)
    assert {a["value"]: a["exchanges"] for a in summary["actors"]} == {"svc-b": 2, "svc-c": 1, "svc-d": 1}
    assert {a["value"] for a in summary["audiences"]} == {"api", "orders"}
    assert await q.subject_summary(store, IDP, "nobody") is None


async def test_tree_shows_ancestors_descendants_and_revocation_state(world):
    """The tree of b: root above it (without root's other branch), c below it, b revoked, c revoked through b."""
    store, t = world
    tree = await q.token_tree(store, t["b"].issued_jti)
    root = tree["root"]
    assert tree["ancestors"] == [t["root"].issued_jti] and tree["descendants"] == 1 and not tree["truncated"]
    assert root["jti"] == t["root"].issued_jti and root["revoked"] is None
    [b] = root["children"]
    assert b["jti"] == t["b"].issued_jti and b["revoked"]["how"] == "token"
    [c] = b["children"]
    assert c["revoked"] == {"how": "ancestor", "jti": t["b"].issued_jti}
    assert c["actors"] == ["svc-c", "svc-b"]


async def test_tree_of_root_lists_all_descendants(world):
    """From the root, every token exchanged from it appears under its parent."""
    store, t = world
    tree = await q.token_tree(store, t["root"].issued_jti)
    assert tree["ancestors"] == [] and tree["descendants"] == 3
    assert [n["jti"] for n in tree["root"]["children"]] == [t["b"].issued_jti, t["d"].issued_jti]


async def test_tree_is_truncated_at_the_node_bound_and_unknown_jti_is_none(world):
    """A huge tree stops at `max_nodes` and says so; an unknown jti has no tree."""
    store, t = world
    tree = await q.token_tree(store, t["root"].issued_jti, max_nodes=2)
    assert tree["truncated"] and tree["descendants"] == 2
    assert await q.token_tree(store, "no-such-jti") is None


async def test_subject_and_client_revocations_mark_tokens_issued_before(store):
    """A SubjectRevoked/ClientRevoked marks tokens issued before its instant, not those issued after."""
    w = Workload()
    old = w.exchange(sub="erin")
    revoked = w.revoke_subject("erin")
    new = w.exchange(sub="erin")
    await append(store, [old, revoked, new, w.revoke_token(new.issued_jti, cascade=False)])
    runner = ProjectionRunner(store, [AuditProjection()])
    await runner.setup()
    await runner.catch_up()
    assert (await q.token_tree(store, old.issued_jti))["root"]["revoked"]["how"] == "subject"
    assert (await q.token_tree(store, new.issued_jti))["root"]["revoked"]["how"] == "token"


def test_parse_time_accepts_rfc3339_and_epoch():
    """Times are RFC 3339 (Z or offset; naive = UTC) or epoch seconds; anything else is a ValueError."""
    assert q.parse_time("1800000000") == T0
    assert q.parse_time("2027-01-15T08:00:00Z") == T0
    assert q.parse_time("2027-01-15T09:00:00+01:00") == T0
    assert q.parse_time("2027-01-15T08:00:00") == T0
    with pytest.raises(ValueError):
        q.parse_time("yesterday")


async def test_actor_named_twice_in_a_chain_lists_the_exchange_once(store):
    """An actor repeated in one `act` chain (same or another issuer) yields the exchange once, pages intact."""
    w = Workload()
    root = w.exchange()
    middle = w.exchange(parent=root, actor="svc-x")
    again = w.exchange(parent=middle, actor="svc-x")
    chain = {"sub": "svc-x", "iss": "https://a", "act": {"sub": "svc-x", "iss": "https://b"}}
    two_issuers = msgspec.structs.replace(w.exchange(parent=root, actor="svc-x"), act=chain)
    await append(store, [root, middle, again, two_issuers])
    runner = ProjectionRunner(store, [AuditProjection()])
    await runner.setup()
    await runner.catch_up()
    assert jtis(await q.exchanges(store, actor_sub="svc-x")) == [again.parent_jti, again.issued_jti, two_issuers.issued_jti]
    first = await q.exchanges(store, actor_sub="svc-x", limit=2)
    rest = await q.exchanges(store, actor_sub="svc-x", after=first["next"], limit=2)
    assert jtis(first) + jtis(rest) == [again.parent_jti, again.issued_jti, two_issuers.issued_jti]
    assert jtis(await q.exchanges(store, actor_sub="svc-x", actor_iss="https://b")) == [two_issuers.issued_jti]
