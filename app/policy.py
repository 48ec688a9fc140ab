"""Exchange policy, compiled once from the configuration.

Answers, for an authenticated client: which audience a request targets
(``audience``/``resource``, RFC 8707), which scopes it may receive (only ever
narrowed: requested ⊆ subject ∩ client ∩ audience), whether it may delegate or
impersonate, whether the subject token's ``may_act`` (RFC 8693 §4.4) admits the
actor, and how deep a chain may grow. Every refusal is an :class:`OAuthError`
with a precise ``reason``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from .config import AudienceConfig, ClientConfig, Config
from .errors import invalid_request, invalid_scope, invalid_target, unauthorized_client

ExchangeKind = Literal["delegation", "impersonation"]

_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


def parse_scope(value: str | None) -> list[str]:
    """Split an RFC 6749 §3.3 scope string; malformed scope tokens are ``invalid_scope``."""
    if value is None:
        return []
    tokens = value.split(" ")
    if any(not _SCOPE_TOKEN.match(t) for t in tokens):
        raise invalid_scope("scope must be space-separated scope tokens (RFC 6749 §3.3)", reason="malformed_scope")
    return list(dict.fromkeys(tokens))


def token_scopes(claims: Mapping[str, Any]) -> set[str]:
    """Scopes a token carries: RFC 9068 ``scope`` string, or a ``scp`` list some issuers use."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return {s for s in scope.split(" ") if s}
    scp = claims.get("scp")
    if isinstance(scp, list):
        return {s for s in scp if isinstance(s, str) and s}
    if isinstance(scp, str):
        return {s for s in scp.split(" ") if s}
    return set()


def _check_resource(uri: str) -> None:
    parts = urlsplit(uri)
    if not parts.scheme or not (parts.netloc or parts.path) or "#" in uri:
        raise invalid_target(
            "resource must be an absolute URI without a fragment (RFC 8707)", reason="malformed_resource"
        )


class Policy:
    """The compiled policy: lookups by client, audience and resource built once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clients: dict[str, ClientConfig] = {c.client_id: c for c in config.clients}
        self.audiences: dict[str, AudienceConfig] = {a.audience: a for a in config.audiences}
        self._by_resource: dict[str, AudienceConfig] = {}
        for audience in config.audiences:
            for resource in audience.resources:
                self._by_resource[resource] = audience
        self._client_audiences = {c.client_id: frozenset(c.audiences) for c in config.clients}
        self._client_scopes = {c.client_id: frozenset(c.scopes) for c in config.clients}
        self._audience_scopes = {a.audience: frozenset(a.scopes) for a in config.audiences}
        self.federation: dict[tuple[str, str], str] = {
            (f.issuer, f.subject): f.principal for f in config.federation
        }

    def require_exchange_rights(self, client: ClientConfig) -> None:
        """A client with no audience or neither delegation nor impersonation may not exchange at all."""
        if not client.audiences or not (client.delegation or client.impersonation):
            raise unauthorized_client("this client is not allowed to use token exchange", reason="no_exchange_rights")

    def resolve_target(
        self, client: ClientConfig, audiences: Sequence[str], resources: Sequence[str]
    ) -> AudienceConfig:
        """The one configured audience named by ``audience``/``resource``, if the client may ask for it."""
        for resource in resources:
            _check_resource(resource)
        targets: dict[str, AudienceConfig] = {}
        for name in audiences:
            target = self.audiences.get(name) or self._by_resource.get(name)
            if target is None:
                raise invalid_target(f"unknown audience: {name}", reason="unknown_audience")
            targets[target.audience] = target
        for resource in resources:
            target = self._by_resource.get(resource) or self.audiences.get(resource)
            if target is None:
                raise invalid_target(f"unknown resource: {resource}", reason="unknown_resource")
            targets[target.audience] = target
        if not targets:
            if len(client.audiences) == 1:
                return self.audiences[client.audiences[0]]
            raise invalid_target("audience or resource is required for this client", reason="no_target")
        if len(targets) > 1:
            raise invalid_target("all audience/resource values must name one target", reason="multiple_targets")
        (target,) = targets.values()
        if target.audience not in self._client_audiences[client.client_id]:
            raise invalid_target(f"client may not obtain tokens for {target.audience}", reason="audience_not_allowed")
        return target

    def grant_scopes(
        self,
        requested: list[str],
        subject_claims: Mapping[str, Any],
        client: ClientConfig,
        target: AudienceConfig,
    ) -> list[str]:
        """Scopes to issue: requested ⊆ subject ∩ client ∩ audience, or all of that set when none requested."""
        available = token_scopes(subject_claims) & self._client_scopes[client.client_id] & self._audience_scopes[target.audience]
        if not requested:
            return sorted(available)
        missing = [s for s in requested if s not in available]
        if missing:
            raise invalid_scope(f"scope not grantable: {' '.join(missing)}", reason="scope_not_allowed")
        return requested

    def exchange_kind(self, client: ClientConfig, has_actor_token: bool) -> ExchangeKind:
        """Delegation when an actor is present (token, or the client itself in ``actor = "client"`` mode)."""
        if has_actor_token:
            if not client.delegation:
                raise unauthorized_client("delegation is not permitted for this client", reason="delegation_not_allowed")
            return "delegation"
        if client.actor == "client" and client.delegation:
            return "delegation"
        if client.impersonation:
            return "impersonation"
        if client.delegation:
            raise invalid_request("actor_token is required for delegation by this client", reason="actor_token_required")
        raise unauthorized_client("impersonation is not permitted for this client", reason="impersonation_not_allowed")

    def check_subject_issuer(self, client: ClientConfig, issuer: str, local: bool) -> None:
        """The client may present subject tokens only from its listed issuers (Baton's own always)."""
        if local or client.subject_issuers is None:
            return
        if issuer not in client.subject_issuers:
            raise invalid_request("subject token issuer not accepted for this client", reason="issuer_not_allowed")

    def depth_limit(self, target: AudienceConfig) -> int:
        """Maximum exchange depth for tokens aimed at ``target``."""
        return target.max_depth if target.max_depth is not None else self.config.tokens.max_depth

    def principal_for(self, issuer: str, subject: str) -> str | None:
        """The internal principal an external (``iss``, ``sub``) is federated to, if any."""
        return self.federation.get((issuer, subject))


def check_may_act(claims: Mapping[str, Any], actor_iss: str | None, actor_sub: str) -> None:
    """RFC 8693 §4.4: when the subject token names who may act for it, the actor must be that party.

    ``actor_iss`` is None when the actor is the client itself (it has no issuer to compare).
    """
    may_act = claims.get("may_act")
    if may_act is None:
        return
    if not isinstance(may_act, Mapping) or not isinstance(may_act.get("sub"), str):
        raise invalid_request("subject token has a malformed may_act claim", reason="may_act_malformed")
    if may_act["sub"] != actor_sub:
        raise invalid_request("the actor is not authorized by the subject token's may_act", reason="may_act_mismatch")
    if actor_iss is not None and "iss" in may_act and may_act["iss"] != actor_iss:
        raise invalid_request("the actor's issuer does not match may_act", reason="may_act_mismatch")
