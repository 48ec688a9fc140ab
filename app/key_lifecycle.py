"""Signing-key lifecycle: next → active → retired → removed, as pure transitions on a key list.

A *next* key is published in JWKS but does not sign yet; after ``promote_after``
seconds every resource-server cache has seen it and it may become *active*
(the previous active key becomes *retired*). A retired key stays published
until every token it signed has expired (``retired_at`` + the longest token
lifetime + leeway), then it is *removed*: its private half is deleted and a
public-only tombstone stays in the file, so ``baton verify`` can still check
the checkpoints it signed without trusting the database for keys. Every
transition yields a :class:`KeyChange`, recorded as a ``SigningKeyRotated``
event with the public JWK only (the audit trail of which key signed when).

The functions here never touch disk or the store: the CLI and the runtime's
scheduler call them under the key-file lock (:mod:`app.key_file`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import KeySet

from eventstore.events import SigningKeyRotated
from eventstore.store import EventStore

from .config import Config, SigningConfig
from .keys import Jwk, generate_key, public_jwk

#: the stream every key change is appended to
KEY_STREAM = "$baton.keys"
STATES = ("next", "active", "retired")


class LifecycleError(Exception):
    """A transition that would break verification or signing; the message says why."""


@dataclass(frozen=True)
class KeyChange:
    """One key entering a state (``next``, ``active``, ``retired``, ``removed``)."""

    kid: str
    alg: str
    state: str
    public: Jwk


@dataclass(frozen=True)
class KeyInfo:
    """One row of ``baton keys list``: times are Unix seconds, ``expires`` None while the key may sign."""

    state: str
    kid: str
    alg: str
    created: int
    expires: int | None


def state_of(jwk: Jwk) -> str:
    """The lifecycle state of a key (keys written before lifecycles existed are active)."""
    return str(jwk.get("baton_state", "active"))


def max_token_lifetime(config: Config) -> int:
    """The longest a token Baton signs can be valid: the largest configured ttl plus the leeway."""
    ttls = [config.tokens.ttl, *(a.ttl for a in config.audiences if a.ttl)]
    return max(ttls) + config.tokens.leeway


def key_expiry(jwk: Jwk, max_lifetime: int) -> int | None:
    """When a retired key may be removed (None for keys that are not retired)."""
    if state_of(jwk) != "retired":
        return None
    return int(jwk.get("baton_retired", 0)) + max_lifetime


def _change(jwk: Jwk, state: str) -> KeyChange:
    return KeyChange(kid=jwk["kid"], alg=jwk["alg"], state=state, public=public_jwk(jwk))


def _with_state(jwk: Jwk, state: str, now: float) -> Jwk:
    stamp = {"active": "baton_activated", "retired": "baton_retired"}.get(state)
    updated = {**jwk, "baton_state": state}
    if stamp:
        updated[stamp] = int(now)
    return updated


def _tombstone(jwk: Jwk, now: float) -> Jwk:
    """The public half of a removed key, kept for verifying old checkpoints."""
    return {**public_jwk(jwk), "baton_state": "removed", "baton_created": jwk.get("baton_created", 0),
            "baton_removed": int(now)}


def _find(keys: Sequence[Jwk], kid: str) -> Jwk:
    for jwk in keys:
        if jwk["kid"] == kid:
            return jwk
    raise LifecycleError(f"no key with kid {kid!r}")


def rotate(keys: Sequence[Jwk], algorithm: str, now: float) -> tuple[list[Jwk], list[KeyChange]]:
    """Add a *next* key of ``algorithm``; refused while another next key waits."""
    waiting = [k["kid"] for k in keys if state_of(k) == "next"]
    if waiting:
        raise LifecycleError(f"key {waiting[0]} is already next; promote or retire it first")
    new = generate_key(algorithm, state="next")
    new["baton_created"] = int(now)
    return [*keys, new], [_change(new, "next")]


def promote(
    keys: Sequence[Jwk], now: float, *, kid: str | None = None, min_age: float = 0.0
) -> tuple[list[Jwk], list[KeyChange]]:
    """Make the next key (or ``kid``) active and retire the key that was active.

    Refused when the key was published less than ``min_age`` seconds ago:
    resource servers that cached the JWKS before it appeared could not verify it.
    """
    candidates = [k for k in keys if state_of(k) == "next" and (kid is None or k["kid"] == kid)]
    if not candidates:
        if kid is not None:
            raise LifecycleError(f"key {kid} is {state_of(_find(keys, kid))}, not next")
        raise LifecycleError("no next key to promote; run `baton keys rotate` first")
    chosen = candidates[0]
    age = now - int(chosen.get("baton_created", 0))
    if age < min_age:
        raise LifecycleError(
            f"key {chosen['kid']} was published {age:.0f} s ago; caches may not have it until "
            f"signing.promote_after ({min_age:.0f} s) has passed (--force overrides)"
        )
    updated: list[Jwk] = []
    changes: list[KeyChange] = []
    for jwk in keys:
        if jwk is chosen:
            jwk = _with_state(jwk, "active", now)
            changes.append(_change(jwk, "active"))
        elif state_of(jwk) == "active":
            jwk = _with_state(jwk, "retired", now)
            changes.append(_change(jwk, "retired"))
        updated.append(jwk)
    return updated, changes


def retire(keys: Sequence[Jwk], kid: str, now: float) -> tuple[list[Jwk], list[KeyChange]]:
    """Retire ``kid``. A next key signed nothing, so it is removed at once; the only active key cannot go."""
    target = _find(keys, kid)
    state = state_of(target)
    if state in ("retired", "removed"):
        raise LifecycleError(f"key {kid} is already {state}")
    if state == "active" and sum(state_of(k) == "active" for k in keys) == 1:
        raise LifecycleError(f"key {kid} is the only active key; promote a next key instead (that retires it)")
    if state == "next":
        return [_tombstone(k, now) if k is target else k for k in keys], [_change(target, "removed")]
    retired = _with_state(target, "retired", now)
    return [retired if k is target else k for k in keys], [_change(retired, "retired")]


def prune(keys: Sequence[Jwk], now: float, max_lifetime: int) -> tuple[list[Jwk], list[KeyChange]]:
    """Remove retired keys whose every token has expired (private half deleted, public tombstone kept)."""
    kept: list[Jwk] = []
    changes: list[KeyChange] = []
    for jwk in keys:
        expiry = key_expiry(jwk, max_lifetime)
        if expiry is not None and expiry <= now:
            changes.append(_change(jwk, "removed"))
            jwk = _tombstone(jwk, now)
        kept.append(jwk)
    return kept, changes


def scheduled(
    keys: Sequence[Jwk], now: float, signing: SigningConfig, max_lifetime: int
) -> tuple[list[Jwk], list[KeyChange]]:
    """The automatic schedule: prune, promote a next key old enough, rotate an active key too old."""
    current, changes = prune(keys, now, max_lifetime)
    if signing.rotate_days <= 0:
        return current, changes
    ready = [k for k in current if state_of(k) == "next" and now - int(k.get("baton_created", 0)) >= signing.promote_after]
    if ready:
        current, more = promote(current, now, kid=ready[0]["kid"])
        return current, changes + more
    active = [k for k in current if state_of(k) == "active"]
    has_next = any(state_of(k) == "next" for k in current)
    started = max((int(k.get("baton_activated", k.get("baton_created", 0))) for k in active), default=0)
    if not has_next and now - started >= signing.rotate_days * 86_400:
        current, more = rotate(current, signing.algorithm, now)
        changes += more
    return current, changes


def describe(keys: Sequence[Jwk], max_lifetime: int) -> list[KeyInfo]:
    """Rows for ``baton keys list``, in file order."""
    return [
        KeyInfo(state_of(k), k["kid"], k["alg"], int(k.get("baton_created", 0)), key_expiry(k, max_lifetime))
        for k in keys
    ]


def checkpoint_keys(keys: Sequence[Jwk]) -> KeySet:
    """Public keys of every key ever in the file, removed ones included: what checkpoints may be signed with."""
    return KeySet.import_key_set({"keys": [public_jwk(k) for k in keys]})


def change_events(changes: Sequence[KeyChange], now: float) -> list[SigningKeyRotated]:
    """``SigningKeyRotated`` events for ``changes`` (public JWKs only)."""
    return [SigningKeyRotated(at=now, kid=c.kid, alg=c.alg, state=c.state, public_jwk=c.public) for c in changes]  # type: ignore[arg-type]


async def record_changes(store: EventStore, changes: Sequence[KeyChange], now: float) -> None:
    """Append the events for ``changes`` to :data:`KEY_STREAM` (nothing when empty)."""
    if changes:
        events = change_events(changes, now)
        await store.append(KEY_STREAM, events, event_ids=[uuid.uuid4().hex for _ in events])


async def key_history(store: EventStore) -> list[Jwk]:
    """Every public key ever recorded in :data:`KEY_STREAM` (for verifying old checkpoints)."""
    seen: dict[str, Jwk] = {}
    for record in await store.read_stream(KEY_STREAM):
        event: Any = record.event
        if isinstance(event, SigningKeyRotated):
            seen.setdefault(event.kid, dict(event.public_jwk))
    return list(seen.values())
