"""The token exchange itself (RFC 8693 §2), after the form is parsed and the client authenticated.

Order of checks: rate limit → grant type → exchange rights → request shape →
target → subject token → actor token → lineage of Baton tokens (revoked?
depth?) → kind and ``may_act`` → scopes → claims → sign → append
``TokenExchanged`` on condition that no revocation covers it (judged under the
store's write lock, where the lineage is updated in the same transaction) →
respond. Revocations of other issuers' subjects are judged only there: one
check, never stale, and no extra read. Nothing is returned before the event is
durable. Every refusal raises :class:`OAuthError`; the caller records
it as ``ExchangeDenied`` with what :class:`DenialContext` gathered so far.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventstore import NO_STREAM, AppendRefused, StoreUnavailable, TokenExchanged
from eventstore.errors import InvalidEvent
from eventstore.store import EventStore
from projections.lineage import ExchangeCondition, LineageReader, LineageRow, PresentedToken

from .cache import Cache, retry_after_seconds
from .claims import actor_claim, build_claims, expiry
from .config import ClientConfig, Config
from .errors import (
    OAuthError,
    invalid_request,
    rate_limited,
    temporarily_unavailable,
    unsupported_grant_type,
)
from .forms import Form
from .issuers import IssuerRegistry, ValidatedToken
from .jose_strict import TokenRejected
from .keys import KeyRing
from .policy import Policy, check_may_act, parse_scope
from .types import ACCEPTED_TOKEN_TYPES, GRANT_TOKEN_EXCHANGE, ISSUABLE_TOKEN_TYPES, TT_ACCESS_TOKEN


def new_jti() -> str:
    """A fresh token id: 144 random bits, base64url, never beginning with ``-``.

    Operators paste jtis into ``baton revoke --jti`` and ``baton audit tree``; a leading ``-``
    reads as an option there, so such draws are redrawn (costing under 0.1 bit).
    """
    while (jti := secrets.token_urlsafe(18))[0] == "-":
        pass
    return jti


@dataclass
class DenialContext:
    """What is known about a request when it is refused (for the ``ExchangeDenied`` event)."""

    client_id: str | None = None
    authenticated: bool = False
    subject_iss: str | None = None
    subject_sub: str | None = None
    subject_jti: str | None = None
    actor_sub: str | None = None
    audience: list[str] = field(default_factory=list)
    scope: list[str] = field(default_factory=list)


@dataclass
class _Subject:
    token: ValidatedToken
    lineage: LineageRow | None


#: what an append refused by the lineage means for the caller (see ExchangeCondition)
_REFUSALS = {
    "subject_revoked": "subject token's subject has been revoked",
    "actor_revoked": "actor token's subject has been revoked",
}


class TokenExchanger:
    """Runs one exchange for an authenticated client."""

    def __init__(
        self,
        config: Config,
        policy: Policy,
        keys: Callable[[], KeyRing],
        issuers: IssuerRegistry,
        lineage: LineageReader,
        store: EventStore,
        cache: Cache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._policy = policy
        self._keys = keys
        self._issuers = issuers
        self._lineage = lineage
        self._store = store
        self._cache = cache
        self._clock = clock

    async def exchange(
        self, form: Form, client: ClientConfig, request_id: str, source: str | None, ctx: DenialContext
    ) -> dict[str, Any]:
        """Perform the exchange; returns the RFC 8693 §2.2.1 response body."""
        ctx.client_id = client.client_id
        client_bucket = (f"c:{client.client_id}", client.rate, max(client.burst, 1))
        if client.subject_rate <= 0:
            await self._rate_limit([client_bucket])
        grant_type = form.require("grant_type")
        if grant_type != GRANT_TOKEN_EXCHANGE:
            raise unsupported_grant_type(f"grant_type {grant_type!r} is not supported; use {GRANT_TOKEN_EXCHANGE}")
        self._policy.require_exchange_rights(client)

        subject_token = form.require("subject_token")
        subject_kind = _token_kind(form.require("subject_token_type"), "subject_token_type")
        actor_token = form.get("actor_token")
        actor_type = form.get("actor_token_type")
        if actor_token and not actor_type:
            raise invalid_request("actor_token_type is required with actor_token", reason="missing_parameter")
        if actor_type and not actor_token:
            raise invalid_request("actor_token_type must not be sent without actor_token", reason="unexpected_parameter")
        requested_type = form.get("requested_token_type") or TT_ACCESS_TOKEN
        if requested_type not in ISSUABLE_TOKEN_TYPES:
            raise invalid_request(
                f"requested_token_type {requested_type!r} cannot be issued; use access_token or jwt",
                reason="unsupported_requested_token_type",
            )
        ctx.audience = form.getlist("audience") + form.getlist("resource")
        requested_scope = parse_scope(form.get("scope"))
        ctx.scope = requested_scope
        target = self._policy.resolve_target(client, form.getlist("audience"), form.getlist("resource"))
        ctx.audience = [target.audience]

        presented: list[PresentedToken] = []  # tokens of other issuers: revocation of their subjects is judged at append
        subject = await self._subject(subject_token, subject_kind, client, ctx, presented)
        if client.subject_rate > 0:
            # one round trip for both limits: the subject is known only now
            subject_key = f"s:{client.client_id}:{subject.token.issuer}:{subject.token.subject}"
            await self._rate_limit([client_bucket, (subject_key, client.subject_rate, max(client.subject_burst, 1))])
        actor = await self._actor(actor_token, actor_type, client, ctx, presented) if actor_token else None

        kind = self._policy.exchange_kind(client, actor is not None)
        prior_act = subject.token.claims.get("act")
        if kind == "delegation":
            if actor is not None:
                actor_iss, actor_sub = actor.issuer, actor.subject
                check_may_act(subject.token.claims, actor_iss, actor_sub)
                act = actor_claim(actor_sub, actor_iss, prior_act)
            else:
                actor_iss, actor_sub = None, client.client_id
                # a client acting for itself is a Baton identity: may_act.iss, if any, must be Baton's
                check_may_act(subject.token.claims, self._config.issuer, client.client_id)
                act = actor_claim(client.client_id, None, prior_act, client_id=client.client_id)
        else:
            actor_iss = actor_sub = None
            check_may_act(subject.token.claims, self._config.issuer, client.client_id)
            act = dict(prior_act) if isinstance(prior_act, dict) else None

        parent = subject.lineage
        depth = (parent.depth if parent else 0) + 1
        limit = self._policy.depth_limit(target)
        if depth > limit:
            raise invalid_request(
                f"exchange depth {depth} exceeds the limit of {limit} for {target.audience}", reason="depth_exceeded"
            )
        scopes = self._policy.grant_scopes(requested_scope, subject.token.claims, client, target)
        ctx.scope = scopes

        now = int(self._clock())
        bounds = [float(subject.token.claims["exp"])]
        if actor is not None:
            bounds.append(float(actor.claims["exp"]))
        ttl = target.ttl or self._config.tokens.ttl
        exp = expiry(now, ttl, bounds, self._config.tokens.allow_lifetime_extension)
        if exp <= now:
            raise invalid_request("subject or actor token expires too soon to exchange", reason="subject_expired")
        jti = new_jti()
        sub = self._policy.principal_for(subject.token.issuer, subject.token.subject) or subject.token.subject
        claims = build_claims(
            issuer=self._config.issuer,
            subject=sub,
            audience=target.audience,
            client_id=client.client_id,
            jti=jti,
            now=now,
            exp=exp,
            scopes=scopes,
            act=act,
            subject_claims=subject.token.claims,
            mapping=target.claims,
        )
        keyring = self._keys()
        token = keyring.sign(claims)
        event = TokenExchanged(
            at=self._clock(),
            request_id=request_id,
            client_id=client.client_id,
            kind=kind,
            subject_iss=subject.token.issuer,
            subject_sub=subject.token.subject,
            subject_jti=_str_or_none(subject.token.claims.get("jti")),
            subject_token_type=form.require("subject_token_type"),
            actor_iss=actor_iss,
            actor_sub=actor_sub,
            actor_jti=_str_or_none(actor.claims.get("jti")) if actor else None,
            act=act,
            parent_jti=parent.jti if parent else None,
            root_jti=parent.root_jti if parent else jti,
            depth=depth,
            audience=[target.audience],
            resource=form.getlist("resource"),
            scope=scopes,
            issued_jti=jti,
            issued_token_type=requested_type,
            issued_at=now,
            expires_at=exp,
            token_sha256=hashlib.sha256(token.encode()).hexdigest(),
            kid=keyring.kid,
            source_address=source,
        )
        try:
            (record,) = await self._store.append(
                f"token-{jti}", [event], expected_version=NO_STREAM, event_ids=[f"x-{jti}"],
                condition=ExchangeCondition(presented=tuple(presented)),
            )
        except StoreUnavailable as exc:
            raise temporarily_unavailable("the event store is unavailable; no token was issued") from exc
        except AppendRefused as exc:
            # judged under the store's write lock: a revocation committed before this append is always seen
            if exc.reason in _REFUSALS:
                raise invalid_request(_REFUSALS[exc.reason], reason=exc.reason) from exc
            raise invalid_request(
                "a revocation covering this exchange committed while it ran", reason="revoked_during_exchange"
            ) from exc
        except InvalidEvent as exc:
            raise invalid_request("the exchange cannot be recorded faithfully", reason="unrecordable") from exc
        if record.note == "born_revoked":
            # a revocation of the subject, its client or an ancestor committed while we worked:
            # the token is recorded (revoked) but never handed out
            raise invalid_request("a revocation covering this exchange committed while it ran", reason="revoked_during_exchange")
        body: dict[str, Any] = {
            "access_token": token,
            "issued_token_type": requested_type,
            "token_type": "Bearer",
            "expires_in": exp - now,
        }
        if scopes:
            body["scope"] = " ".join(scopes)
        return body

    async def _rate_limit(self, buckets: list[tuple[str, float, int]]) -> None:
        if all(rate <= 0 for _, rate, _ in buckets):
            return
        wait = await self._cache.rate_limit_all(buckets)
        if wait > 0:
            raise rate_limited(retry_after_seconds(wait))

    async def _validate(self, token: str, kind: str, role: str) -> ValidatedToken:
        try:
            return await self._issuers.validate(token, kind)
        except TokenRejected as exc:
            raise invalid_request(f"{role}: {exc.description}", reason=f"{role.split('_')[0]}_{exc.reason}") from exc

    async def _subject(
        self, token: str, kind: str, client: ClientConfig, ctx: DenialContext, presented: list[PresentedToken]
    ) -> _Subject:
        validated = await self._validate(token, kind, "subject_token")
        ctx.subject_iss, ctx.subject_sub = validated.issuer, validated.subject
        ctx.subject_jti = _str_or_none(validated.claims.get("jti"))
        self._policy.check_subject_issuer(client, validated.issuer, validated.local)
        if validated.local:
            row = await self._own_token_lineage(validated, "subject", client)
            return _Subject(validated, row)
        presented.append(_presented(validated, "subject"))
        return _Subject(validated, None)

    async def _actor(
        self, token: str, token_type: str | None, client: ClientConfig, ctx: DenialContext,
        presented: list[PresentedToken],
    ) -> ValidatedToken:
        kind = _token_kind(token_type or "", "actor_token_type")
        validated = await self._validate(token, kind, "actor_token")
        ctx.actor_sub = validated.subject
        if validated.local:
            await self._own_token_lineage(validated, "actor", client)
        else:
            presented.append(_presented(validated, "actor"))
        return validated

    async def _own_token_lineage(self, token: ValidatedToken, role: str, client: ClientConfig) -> LineageRow:
        """A Baton token's lineage: known, not revoked, and presented by its client or its audience."""
        jti = token.claims.get("jti")
        row = await self._read(self._lineage.get(jti)) if isinstance(jti, str) else None
        if row is None:
            raise invalid_request(f"{role} token is not known to Baton", reason=f"{role}_unknown")
        if row.revoked:
            raise invalid_request(f"{role} token has been revoked", reason=f"{role}_revoked")
        if client.client_id != row.client_id and client.client_id not in row.audience:
            raise invalid_request(
                f"this Baton {role} token may be presented only by the client it was issued to or its audience",
                reason=f"{role}_not_presentable",
            )
        return row

    @staticmethod
    async def _read(awaitable: Any) -> Any:
        try:
            return await awaitable
        except StoreUnavailable as exc:
            raise temporarily_unavailable("the event store is unavailable") from exc


def _token_kind(token_type: str, parameter: str) -> str:
    kind = ACCEPTED_TOKEN_TYPES.get(token_type)
    if kind is None:
        raise invalid_request(f"{parameter} {token_type!r} is not supported", reason="unsupported_token_type")
    return kind


def _presented(token: ValidatedToken, role: str) -> PresentedToken:
    """A token of another issuer as the append condition sees it (no ``iat``: any revocation covers it)."""
    iat = token.claims.get("iat")
    issued_at = float(iat) if isinstance(iat, (int, float)) and not isinstance(iat, bool) else None
    return PresentedToken(role=role, iss=token.issuer, sub=token.subject, issued_at=issued_at)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


__all__ = ["DenialContext", "OAuthError", "TokenExchanger"]
