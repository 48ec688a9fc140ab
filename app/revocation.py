"""Revocation commands shared by ``POST /revoke``, the admin endpoint and ``baton revoke``.

Each appends one event; the lineage projection, updated in the same
transaction, marks the token (and every descendant), or every token of a
subject or client issued before an instant.
"""

from __future__ import annotations

import time
import uuid

from eventstore import ANY, ClientRevoked, SubjectRevoked, TokenRevoked
from eventstore.store import EventStore, RecordedEvent


async def revoke_token(
    store: EventStore, jti: str, *, by: str, reason: str = "", cascade: bool = True, request_id: str | None = None
) -> RecordedEvent:
    """Revoke one issued token and (by default) its whole lineage below it."""
    event = TokenRevoked(at=time.time(), jti=jti, cascade=cascade, by=by, reason=reason, request_id=request_id)
    (record,) = await store.append(f"token-{jti}", [event], expected_version=ANY, event_ids=[uuid.uuid4().hex])
    return record


async def revoke_subject(
    store: EventStore, iss: str, sub: str, *, by: str, reason: str = "", before: float | None = None
) -> RecordedEvent:
    """Revoke every token of subject (``iss``, ``sub``) issued before ``before`` (default: now)."""
    now = time.time()
    event = SubjectRevoked(at=now, iss=iss, sub=sub, before=now if before is None else before, by=by, reason=reason)
    (record,) = await store.append(f"subject-{iss}|{sub}", [event], event_ids=[uuid.uuid4().hex])
    return record


async def revoke_client(
    store: EventStore, client_id: str, *, by: str, reason: str = "", before: float | None = None
) -> RecordedEvent:
    """Revoke every token issued to ``client_id`` before ``before`` (default: now)."""
    now = time.time()
    event = ClientRevoked(at=now, client_id=client_id, before=now if before is None else before, by=by, reason=reason)
    (record,) = await store.append(f"client-{client_id}", [event], event_ids=[uuid.uuid4().hex])
    return record
