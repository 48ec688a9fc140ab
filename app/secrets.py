"""Client secrets: stored as scrypt hashes, verified in constant time.

Format: ``scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>`` (RFC 7914 parameters,
OWASP-recommended N=2^15, r=8, p=1). The same check serves the admin credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random

_PREFIX = "scrypt"
_LOG_N, _R, _P, _DKLEN = 15, 8, 1, 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(secret: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=1 << log_n, r=r, p=p, dklen=_DKLEN, maxmem=256 * 1024 * 1024
    )


def hash_secret(secret: str, *, log_n: int = _LOG_N) -> str:
    """Hash a client secret for ``secret_hash`` in baton.toml."""
    if not secret:
        raise ValueError("secret must not be empty")
    salt = _random.token_bytes(16)
    return f"{_PREFIX}${log_n}${_R}${_P}${_b64(salt)}${_b64(_derive(secret, salt, log_n, _R, _P))}"


def verify_secret(secret: str, encoded: str) -> bool:
    """True when ``secret`` matches ``encoded``; constant time in the secret."""
    try:
        prefix, log_n, r, p, salt, expected = encoded.split("$")
        if prefix != _PREFIX or not (10 <= int(log_n) <= 20):
            return False
        derived = _derive(secret, _unb64(salt), int(log_n), int(r), int(p))
        return hmac.compare_digest(derived, _unb64(expected))
    except (ValueError, TypeError):
        return False


def random_secret() -> str:
    """A new random client secret (256 bits, URL-safe)."""
    return _random.token_urlsafe(32)
