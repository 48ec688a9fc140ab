"""Signing-key lifecycle transitions (pure functions over the key list)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config import SigningConfig
from app.key_lifecycle import (
    LifecycleError,
    checkpoint_keys,
    describe,
    promote,
    prune,
    retire,
    rotate,
    scheduled,
    state_of,
)
from app.keys import KeyRing, generate_key

LIFETIME = 330
PRIVATE = {"d", "p", "q", "dp", "dq", "qi"}


def _one_active(now: float = 0) -> list[dict]:
    key = generate_key("ES256")
    key["baton_created"] = int(now)
    return [key]


def _states(keys: list[dict]) -> list[str]:
    return [state_of(k) for k in keys]


def test_rotate_adds_a_published_key_that_does_not_sign() -> None:
    """After rotate the next key is in JWKS, but tokens are still signed by the active key."""
    keys = _one_active()
    active_kid = keys[0]["kid"]
    keys, changes = rotate(keys, "ES256", 100)
    ring = KeyRing(keys)
    assert _states(keys) == ["active", "next"]
    assert [c.state for c in changes] == ["next"]
    assert ring.kid == active_kid
    assert {k["kid"] for k in ring.public_jwks["keys"]} == {k["kid"] for k in keys}


def test_rotate_refuses_a_second_next_key() -> None:
    """Only one next key waits at a time; a second rotate names the waiting key."""
    keys, _ = rotate(_one_active(), "ES256", 100)
    with pytest.raises(LifecycleError, match="already next"):
        rotate(keys, "ES256", 101)


def test_promote_waits_for_promote_after_then_swaps_active_and_retired() -> None:
    """Promotion before caches can have the key is refused; afterwards next→active and active→retired."""
    keys, _ = rotate(_one_active(), "ES256", 100)
    old, new = keys[0]["kid"], keys[1]["kid"]
    with pytest.raises(LifecycleError, match="promote_after"):
        promote(keys, 150, min_age=60)
    keys, changes = promote(keys, 160, min_age=60)
    assert {c.kid: c.state for c in changes} == {old: "retired", new: "active"}
    ring = KeyRing(keys)
    assert ring.kid == new
    assert old in {k["kid"] for k in ring.public_jwks["keys"]}  # still published for its tokens


def test_promote_without_next_key_fails() -> None:
    """Nothing to promote is an error that points at rotate."""
    with pytest.raises(LifecycleError, match="rotate"):
        promote(_one_active(), 0)


def test_retire_rules() -> None:
    """The only active key cannot be retired; a next key is removed at once; a retired key cannot be retired again."""
    keys = _one_active()
    with pytest.raises(LifecycleError, match="only active"):
        retire(keys, keys[0]["kid"], 10)
    keys, _ = rotate(keys, "ES256", 10)
    dropped, changes = retire(keys, keys[1]["kid"], 20)
    assert [c.state for c in changes] == ["removed"] and _states(dropped) == ["active", "removed"]
    assert not PRIVATE & set(dropped[1])
    keys, _ = promote(keys, 20)
    with pytest.raises(LifecycleError, match="already retired"):
        retire(keys, keys[0]["kid"], 30)
    with pytest.raises(LifecycleError, match="no key"):
        retire(keys, "nope", 30)


def test_prune_removes_retired_keys_only_after_their_tokens_expired() -> None:
    """A retired key stays published for the longest token lifetime, then only a public tombstone remains."""
    keys, _ = rotate(_one_active(), "ES256", 0)
    keys, _ = promote(keys, 1000)
    retired_kid = keys[0]["kid"]
    same, changes = prune(keys, 1000 + LIFETIME - 1, LIFETIME)
    assert changes == [] and same == keys
    pruned, changes = prune(keys, 1000 + LIFETIME, LIFETIME)
    assert [(c.kid, c.state) for c in changes] == [(retired_kid, "removed")]
    assert not PRIVATE & set(pruned[0])
    ring = KeyRing(pruned)
    assert retired_kid not in {k["kid"] for k in ring.public_jwks["keys"]}
    assert checkpoint_keys(pruned).get_by_kid(retired_kid) is not None  # old checkpoints still verify


def test_describe_reports_expiry_of_retired_keys() -> None:
    """``keys list`` rows: retired keys expire at retired_at + lifetime; signing keys have no expiry."""
    keys, _ = rotate(_one_active(5), "ES256", 50)
    keys, _ = promote(keys, 100)
    rows = describe(keys, LIFETIME)
    assert [(r.state, r.expires) for r in rows] == [("retired", 100 + LIFETIME), ("active", None)]
    assert rows[0].created == 5 and rows[1].alg == "ES256"


def test_schedule_rotates_promotes_and_prunes() -> None:
    """rotate_days: a next key appears when the active one is old, is promoted after promote_after, and the old one is later removed."""
    signing = SigningConfig(rotate_days=1, promote_after=600, reload_seconds=1)
    keys = _one_active(0)
    keys, changes = scheduled(keys, 86_399, signing, LIFETIME)
    assert changes == []
    keys, changes = scheduled(keys, 86_400, signing, LIFETIME)
    assert [c.state for c in changes] == ["next"]
    keys, changes = scheduled(keys, 86_400 + 599, signing, LIFETIME)
    assert changes == []
    keys, changes = scheduled(keys, 86_400 + 600, signing, LIFETIME)
    assert sorted(c.state for c in changes) == ["active", "retired"]
    keys, changes = scheduled(keys, 86_400 + 600 + LIFETIME, signing, LIFETIME)
    assert [c.state for c in changes] == ["removed"]
    assert _states(keys) == ["removed", "active"]


def test_schedule_off_only_prunes() -> None:
    """With rotate_days = 0 the schedule never rotates or promotes."""
    keys, _ = rotate(_one_active(0), "ES256", 0)
    after, changes = scheduled(keys, 10**9, SigningConfig(), LIFETIME)
    assert changes == [] and after == keys


OPS = st.lists(st.sampled_from(["rotate", "promote", "retire-next", "retire-old", "prune"]), max_size=12)


@settings(max_examples=30, deadline=None)
@given(ops=OPS)
def test_any_sequence_keeps_exactly_one_active_key(ops: list[str]) -> None:
    """Whatever operators do, one key signs, every published key is public, and changes never carry private parts."""
    keys = _one_active()
    now = 0.0
    for op in ops:
        now += 400
        try:
            if op == "rotate":
                keys, changes = rotate(keys, "ES256", now)
            elif op == "promote":
                keys, changes = promote(keys, now)
            elif op == "prune":
                keys, changes = prune(keys, now, LIFETIME)
            else:
                wanted = "next" if op == "retire-next" else "retired"
                kid = next((k["kid"] for k in keys if state_of(k) == wanted), "missing")
                keys, changes = retire(keys, kid, now)
        except LifecycleError:
            continue
        assert all(not PRIVATE & set(c.public) for c in changes)
        assert _states(keys).count("active") == 1
        ring = KeyRing(keys)
        assert all(not PRIVATE & set(k) for k in ring.public_jwks["keys"])
