"""Event builders for projection and audit tests: real ``eventstore.events`` structs, deterministic values."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from eventstore import (
    ClientAuthFailed,
    ClientRevoked,
    Event,
    EventStore,
    ExchangeDenied,
    SubjectRevoked,
    TokenExchanged,
    TokenRevoked,
)

IDP = "https://idp.example"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
T0 = 1_800_000_000.0


class Workload:
    """Builds events with increasing times and unique ids; nothing is stored until :func:`append`."""

    def __init__(self, start: float = T0) -> None:
        self.clock = start
        self._ids = itertools.count(1)

    def _tick(self) -> float:
        self.clock += 1.0
        return self.clock

    def exchange(
        self,
        *,
        sub: str = "alice",
        iss: str = IDP,
        client: str = "web",
        parent: TokenExchanged | None = None,
        actor: str | None = None,
        audience: Sequence[str] = ("api",),
        scope: Sequence[str] = ("read",),
        kind: str = "delegation",
    ) -> TokenExchanged:
        """A ``TokenExchanged``; with ``parent`` it continues that token's chain (``actor`` joins the ``act``)."""
        n = next(self._ids)
        at = self._tick()
        jti = f"tok-{n}"
        act: dict[str, Any] | None = parent.act if parent else None
        if actor is not None:
            act = {"sub": actor, **({"act": act} if act else {})}
        return TokenExchanged(
            at=at,
            request_id=f"req-{n}",
            client_id=client,
            kind=kind,  # type: ignore[arg-type]
            subject_iss=parent.subject_iss if parent else iss,
            subject_sub=parent.subject_sub if parent else sub,
            subject_jti=parent.issued_jti if parent else f"ext-{n}",
            subject_token_type=ACCESS_TOKEN,
            actor_iss=None,
            actor_sub=actor,
            act=act,
            parent_jti=parent.issued_jti if parent else None,
            root_jti=parent.root_jti if parent else jti,
            depth=parent.depth + 1 if parent else 1,
            audience=list(audience),
            scope=list(scope),
            issued_jti=jti,
            issued_token_type=ACCESS_TOKEN,
            issued_at=int(at),
            expires_at=int(at) + 300,
            token_sha256="00" * 32,
            kid="k1",
        )

    def denied(self, *, sub: str | None = "alice", client: str | None = "web", reason: str = "depth_exceeded") -> ExchangeDenied:
        """An ``ExchangeDenied`` with ``reason``."""
        n = next(self._ids)
        return ExchangeDenied(
            at=self._tick(),
            request_id=f"req-{n}",
            client_id=client,
            error="invalid_request",
            reason=reason,
            description=f"refused: {reason}",
            subject_iss=IDP if sub else None,
            subject_sub=sub,
            audience=["api"],
            scope=["read"],
        )

    def auth_failed(self, *, client: str = "web", reason: str = "bad_secret") -> ClientAuthFailed:
        """A ``ClientAuthFailed``."""
        n = next(self._ids)
        return ClientAuthFailed(
            at=self._tick(), request_id=f"req-{n}", endpoint="token", client_id=client, method="client_secret_basic",
            reason=reason,
        )  # fmt: skip

    def revoke_token(self, jti: str, *, cascade: bool = True) -> TokenRevoked:
        """A ``TokenRevoked``."""
        return TokenRevoked(at=self._tick(), jti=jti, cascade=cascade, by="admin", reason="incident")

    def revoke_subject(self, sub: str, *, iss: str = IDP) -> SubjectRevoked:
        """A ``SubjectRevoked`` for tokens issued up to now."""
        at = self._tick()
        return SubjectRevoked(at=at, iss=iss, sub=sub, before=at, by="admin", reason="left the company")

    def revoke_client(self, client: str) -> ClientRevoked:
        """A ``ClientRevoked`` for tokens issued up to now."""
        at = self._tick()
        return ClientRevoked(at=at, client_id=client, before=at, by="admin", reason="compromised")


async def append(store: EventStore, events: Sequence[Event]) -> None:
    """Append ``events`` in order, one stream per event kind (as the app does, roughly)."""
    for event in events:
        await store.append(f"audit-test-{type(event).__name__}", [event])


async def rows(store: EventStore, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` in a stable order."""
    return sorted(await store.fetch(f"SELECT * FROM {table}"), key=repr)
