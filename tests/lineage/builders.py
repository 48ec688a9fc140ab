"""Events for the lineage tests: exchanges of a fake issuer's users, alone or in chains."""

from __future__ import annotations

import uuid

from eventstore import NO_STREAM, TokenExchanged

IDP = "https://idp.example.com"
BATON = "https://baton.example.com"


def exchanged(jti: str, parent: tuple[str, str, int] | None = None, *, sub: str = "alice", client: str = "svc-a",
              issued_at: int = 1_000, iss: str = IDP) -> TokenExchanged:
    """A TokenExchanged event; ``parent`` is (parent jti, root jti, parent depth)."""
    return TokenExchanged(
        at=float(issued_at), request_id=uuid.uuid4().hex, client_id=client, kind="impersonation",
        subject_iss=BATON if parent else iss, subject_sub=sub, subject_token_type="urn:ietf:params:oauth:token-type:access_token",
        parent_jti=parent[0] if parent else None, root_jti=parent[1] if parent else jti,
        depth=(parent[2] + 1) if parent else 1, audience=["billing"], scope=["billing:read"], issued_jti=jti,
        issued_token_type="urn:ietf:params:oauth:token-type:access_token", issued_at=issued_at,
        expires_at=issued_at + 300, token_sha256="0" * 64, kid="k1",
    )


async def issue(store, event: TokenExchanged) -> None:
    await store.append(f"token-{event.issued_jti}", [event], expected_version=NO_STREAM)


async def chain(store, *jtis: str, **kw) -> None:
    parent = None
    for depth, jti in enumerate(jtis):
        event = exchanged(jti, parent, **kw)
        await issue(store, event)
        parent = (jti, jtis[0], depth + 1)
