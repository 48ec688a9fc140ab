"""Small builders for catalogue requests: forms, credentials, client assertions and raw JWS.

Everything an attack needs to say "this request, but with X" in one line:
:func:`exchange_form` gives a valid token-exchange form to mutate, :func:`basic`
the Basic credentials of a test client, :func:`assertion` a valid
``private_key_jwt`` assertion to break, and :func:`sign_raw` signs any header
bytes (duplicate members, forbidden members) with a real key.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from joserfc.jws import JWSRegistry

from app.types import CLIENT_ASSERTION_TYPE_JWT, GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN
from tests.support.fake_issuer import b64url
from tests.support.harness import BATON, SECRETS

#: clients of the catalogue world that authenticate with the "frontend" secret
SHARED_SECRET_CLIENTS = ("restricted", "delegator", "imponly", "ledger")

Pairs = list[tuple[str, str]]


@dataclass
class Req:
    """One HTTP request of a case: form pairs (or raw content), headers, Basic credentials."""

    form: Pairs | None = None
    content: bytes | None = None
    #: body sent in chunks without Content-Length (chunked transfer encoding)
    chunks: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None
    path: str = "/token"


def secret_of(client: str) -> str:
    """The test secret of a client of the catalogue world."""
    return SECRETS["frontend"] if client in SHARED_SECRET_CLIENTS else SECRETS[client]


def basic(client: str = "frontend") -> tuple[str, str]:
    """Basic credentials (client id, secret) for a client."""
    return (client, secret_of(client))


def exchange_form(subject: str, *, audience: str | None = "orders", **params: str | None) -> Pairs:
    """A valid token-exchange form; ``params`` add or (None) drop fields."""
    fields: dict[str, str | None] = {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": TT_ACCESS_TOKEN,
        "audience": audience,
    }
    fields.update(params)
    return [(k, v) for k, v in fields.items() if v is not None]


def token_request(subject: str, client: str = "frontend", **params: str | None) -> Req:
    """A token-exchange request authenticated with the client's Basic secret."""
    return Req(form=exchange_form(subject, **params), auth=basic(client))


def assertion_claims(client: str = "pkjwt", **overrides: Any) -> dict[str, Any]:
    """Valid ``private_key_jwt`` claims for ``client`` (None removes a claim)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client, "sub": client, "aud": f"{BATON}/token", "iat": now, "exp": now + 60,
        "jti": secrets.token_urlsafe(12),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign_raw(header: dict[str, Any] | bytes, claims: dict[str, Any] | bytes, key: Any, alg: str = "ES256") -> str:
    """A compact JWS over exact header/payload bytes, really signed with ``key`` under ``alg``."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    c = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    signing_input = f"{b64url(h)}.{b64url(c)}".encode()
    signature = JWSRegistry.algorithms[alg].sign(signing_input, key)
    return f"{signing_input.decode()}.{b64url(signature)}"


def hmac_jws(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWS keyed with ``secret`` (for key-confusion attacks: a public key as HMAC secret)."""
    import hashlib
    import hmac

    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def assertion_form(assertion: str, subject: str | None = None, **params: str | None) -> Pairs:
    """A form authenticating with ``assertion``; a token exchange when ``subject`` is given."""
    pairs = exchange_form(subject, **params) if subject is not None else [("token", "x")]
    return pairs + [("client_assertion_type", CLIENT_ASSERTION_TYPE_JWT), ("client_assertion", assertion)]


def b64_std(data: bytes) -> str:
    """Standard (padded, +/) base64, which a JWS must not use."""
    return base64.b64encode(data).decode()
