"""Baton's signing keys: a private JWK set on disk, one active key signing tokens.

The file holds a JSON Web Key Set of private keys; each key carries ``kid``,
``alg``, ``use: sig`` and Baton's lifecycle marker ``baton_state``
(``next`` | ``active`` | ``retired``). It is written with mode 0600 and
never logged. ``GET /jwks`` publishes the public halves of every key that is
not removed, so resource servers can verify tokens signed by a retired key.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry

from .jose_strict import key_fits

Jwk = dict[str, Any]

#: the algorithm a key is generated for, and the JWS alg name written in headers
_ALGS: Mapping[str, str] = {"ES256": "ES256", "RS256": "RS256", "PS256": "PS256", "EdDSA": "Ed25519", "Ed25519": "Ed25519"}
#: the ``alg`` values a key file may hold (``EdDSA`` as older files wrote it); symmetric keys and
#: ``none`` never load: a symmetric key's "public half" is its secret, and JWKS would publish it
SIGNING_ALGS = frozenset(_ALGS)
#: the states whose keys sign now or will after promotion, so they must hold a private key
_SIGNING_STATES = frozenset({"active", "next"})
_json = msgspec.json.Encoder(order="deterministic")


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class KeyError_(Exception):
    """The key file is missing, unreadable or holds no usable active key."""


def jws_alg(algorithm: str) -> str:
    """The JWS ``alg`` used for a configured algorithm (``EdDSA`` is written as ``Ed25519``, RFC 9864)."""
    return _ALGS[algorithm]


def generate_key(algorithm: str, state: str = "active") -> Jwk:
    """A new private JWK for ``algorithm`` with a thumbprint ``kid``."""
    alg = jws_alg(algorithm)
    if alg == "ES256":
        key: Any = ECKey.generate_key("P-256", private=True)
    elif alg in ("RS256", "PS256"):
        key = RSAKey.generate_key(2048, private=True)
    else:
        key = OKPKey.generate_key("Ed25519", private=True)
    jwk = dict(key.as_dict(private=True))
    jwk["kid"] = key.thumbprint()
    jwk.update({"alg": alg, "use": "sig", "baton_state": state, "baton_created": int(time.time())})
    return jwk


def _jose_key(jwk: Jwk) -> Any:
    return import_key({k: v for k, v in jwk.items() if not k.startswith("baton_")})


def public_jwk(jwk: Jwk) -> Jwk:
    """The public half of a private JWK (with ``kid``, ``alg``, ``use``).

    ``key_ops`` is left out: a private key's ``["sign"]`` would tell verifiers the public key may not verify.
    """
    public = dict(_jose_key(jwk).as_dict(private=False))
    public.pop("key_ops", None)
    public.update({"kid": jwk["kid"], "alg": jwk["alg"], "use": "sig"})
    return public


def check_key_entry(jwk: Jwk) -> None:
    """Refuse (with :class:`KeyError_`) a key-file entry Baton may not sign with or publish.

    Its ``alg`` must be one of :data:`SIGNING_ALGS`, its ``use`` (if any) ``sig``, its public half
    must fit that alg (type, curve, RSA of at least 2048 bits), and a key that signs now or after
    promotion must hold a private key whose ``key_ops``, if present, allow signing.
    """
    if not isinstance(jwk, dict):
        raise KeyError_("a signing key entry is not a JSON object")
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    if not isinstance(kid, str) or not kid:
        raise KeyError_("a signing key has no kid")
    if not isinstance(alg, str) or alg not in SIGNING_ALGS:
        raise KeyError_(f"signing key {kid}: alg {str(alg)[:20]!r} is not one of {', '.join(sorted(SIGNING_ALGS))}")
    if jwk.get("use", "sig") != "sig":  # the published half says "sig" whatever the entry says
        raise KeyError_(f"signing key {kid}: use {str(jwk.get('use'))[:20]!r} is not \"sig\"")
    try:
        key = _jose_key(jwk)
        fits = key_fits(import_key(public_jwk(jwk)), alg)
        if jwk.get("baton_state", "active") in _SIGNING_STATES:
            key.check_key_op("sign")
    except (JoseError, ValueError, TypeError) as exc:
        raise KeyError_(f"signing key {kid} cannot sign {alg}: {exc}") from exc
    if not fits:
        raise KeyError_(f"signing key {kid} does not fit its alg {alg} (key type, curve or RSA size)")


def write_key_file(path: str | Path, keys: list[Jwk]) -> None:
    """Write a private JWK set atomically with mode 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(msgspec.json.format(_json.encode({"keys": keys}), indent=2))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_key_file(path: str | Path) -> list[Jwk]:
    """Read a private JWK set written by :func:`write_key_file`."""
    try:
        raw = msgspec.json.decode(Path(path).read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        raise KeyError_(f"cannot read signing keys from {path}: {exc}") from exc
    keys = raw.get("keys") if isinstance(raw, dict) else None
    if not isinstance(keys, list) or not keys:
        raise KeyError_(f"{path}: not a JWK set with at least one key")
    return keys


class KeyRing:
    """The loaded signing keys: signs with the active one, publishes the public set."""

    def __init__(self, keys: list[Jwk]) -> None:
        for jwk in keys:
            check_key_entry(jwk)
        active = [k for k in keys if k.get("baton_state", "active") == "active"]
        if not active:
            raise KeyError_("no active signing key")
        self._private = keys
        self._active = active[-1]
        self.kid: str = self._active["kid"]
        self.alg: str = self._active["alg"]
        self._signer = _jose_key(self._active)
        # the header and the key never change for a ring: they are checked and encoded once here, so
        # signing is the algorithm alone (joserfc's compact serializer re-checks both on every call)
        algorithm = JWSRegistry.algorithms[self.alg]  # every SIGNING_ALGS member is registered
        try:
            algorithm.check_key(self._signer)
        except JoseError as exc:
            raise KeyError_(f"signing key {self.kid} does not fit its alg {self.alg}: {exc}") from exc
        self._algorithm = algorithm
        self._encoded_headers: dict[str, bytes] = {}
        published = [public_jwk(k) for k in keys if k.get("baton_state", "active") != "removed"]
        self.public_jwks: dict[str, Any] = {"keys": published}
        self._verify_set = KeySet.import_key_set(self.public_jwks)
        self.algorithms = sorted({k["alg"] for k in published})

    @classmethod
    def load_or_create(cls, path: str | Path, algorithm: str) -> KeyRing:
        """Load the key file, creating it with one active key of ``algorithm`` if missing."""
        path = Path(path)
        if not path.exists():
            write_key_file(path, [generate_key(algorithm)])
        return cls(read_key_file(path))

    def sign(self, claims: Mapping[str, Any], typ: str = "at+jwt") -> str:
        """Sign ``claims`` as a compact JWS (RFC 7515 §7.1) with the active key."""
        header = self._encoded_headers.get(typ)
        if header is None:
            header = self._encoded_headers[typ] = _b64url(_json.encode({"alg": self.alg, "typ": typ, "kid": self.kid}))
        signing_input = header + b"." + _b64url(_json.encode(claims))
        signature = self._algorithm.sign(signing_input, self._signer)
        return (signing_input + b"." + _b64url(signature)).decode("ascii")

    def private_keys(self) -> list[Jwk]:
        """The key file's entries, lifecycle markers included (never log or publish these)."""
        return list(self._private)

    def verification_keys(self) -> KeySet:
        """Public keys for verifying Baton's own tokens and checkpoints."""
        return self._verify_set


class KeyRingSigner:
    """Signs chain checkpoints with whatever key is active in a (possibly reloaded) key ring.

    Fulfils ``eventstore.checkpoints.Signer`` without that package importing the application.
    """

    def __init__(self, ring: Callable[[], KeyRing], typ: str) -> None:
        self._ring = ring
        self._typ = typ

    @property
    def kid(self) -> str:
        """The active key's id."""
        return self._ring().kid

    def sign(self, payload: bytes) -> str:
        """A compact JWS over the JSON object ``payload`` (signed as the same deterministic bytes)."""
        return self._ring().sign(msgspec.json.decode(payload), typ=self._typ)
