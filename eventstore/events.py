"""Baton's events: frozen msgspec Structs in one tagged union, versioned.

Every event carries ``type`` (the tag) and ``version`` (its schema version).
Events are encoded once, deterministically (sorted keys), and those exact
bytes are what the store keeps and hashes. An event is never updated or
deleted; corrections are new events.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=False):
    """Base of every event: ``version`` is the schema version of the struct."""

    version: int = 1
    at: float


class TokenExchanged(_Event, kw_only=True, tag="TokenExchanged"):
    """A token was issued by an exchange. The ``act`` chain is the issued token's."""

    request_id: str
    client_id: str
    kind: Literal["delegation", "impersonation"]
    subject_iss: str
    subject_sub: str
    subject_jti: str | None = None
    subject_token_type: str
    actor_iss: str | None = None
    actor_sub: str | None = None
    actor_jti: str | None = None
    act: dict[str, Any] | None = None
    parent_jti: str | None = None
    root_jti: str
    depth: int
    audience: list[str]
    resource: list[str] = []
    scope: list[str] = []
    issued_jti: str
    issued_token_type: str
    issued_at: int
    expires_at: int
    token_sha256: str
    kid: str
    source_address: str | None = None


class ExchangeDenied(_Event, kw_only=True, tag="ExchangeDenied"):
    """An exchange (or introspection/revocation request) was refused, with its reason code."""

    request_id: str
    endpoint: str = "token"
    client_id: str | None = None
    error: str
    reason: str
    description: str
    subject_iss: str | None = None
    subject_sub: str | None = None
    subject_jti: str | None = None
    actor_sub: str | None = None
    audience: list[str] = []
    scope: list[str] = []
    source_address: str | None = None


class ClientAuthFailed(_Event, kw_only=True, tag="ClientAuthFailed"):
    """A caller failed client authentication (wrong secret, bad assertion, replayed jti …)."""

    request_id: str
    endpoint: str
    client_id: str | None = None
    method: str | None = None
    reason: str
    source_address: str | None = None


class TokenRevoked(_Event, kw_only=True, tag="TokenRevoked"):
    """A token (and, with ``cascade``, its whole lineage below it) was revoked."""

    jti: str
    cascade: bool = True
    by: str
    reason: str = ""
    request_id: str | None = None


class SubjectRevoked(_Event, kw_only=True, tag="SubjectRevoked"):
    """Every token of subject (``iss``, ``sub``) issued before ``before`` is revoked."""

    iss: str
    sub: str
    before: float
    by: str
    reason: str = ""


class ClientRevoked(_Event, kw_only=True, tag="ClientRevoked"):
    """Every token issued to ``client_id`` before ``before`` is revoked."""

    client_id: str
    before: float
    by: str
    reason: str = ""


class SigningKeyRotated(_Event, kw_only=True, tag="SigningKeyRotated"):
    """A signing key changed state (next, active, retired, removed). Public part only."""

    kid: str
    alg: str
    state: Literal["next", "active", "retired", "removed"]
    public_jwk: dict[str, Any]


class ChainCheckpoint(_Event, kw_only=True, tag="ChainCheckpoint"):
    """A signed statement of the hash chain head: (position, head hash, time)."""

    position: int
    head_hash: str
    kid: str
    signature: str


Event = (
    TokenExchanged
    | ExchangeDenied
    | ClientAuthFailed
    | TokenRevoked
    | SubjectRevoked
    | ClientRevoked
    | SigningKeyRotated
    | ChainCheckpoint
)

_encoder = msgspec.json.Encoder(order="deterministic")
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """The canonical bytes of an event: deterministic JSON, stored and hashed as is."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Decode canonical bytes back into the event struct."""
    return _decoder.decode(data)


def event_type(event: Event) -> str:
    """The tag (``type``) of an event."""
    return type(event).__struct_config__.tag  # type: ignore[return-value]
