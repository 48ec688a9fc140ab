"""OAuth error responses (RFC 6749 §5.2, RFC 8693 §2.2.2) as one exception type.

Every refusal Baton makes is an :class:`OAuthError`: the HTTP status, the
registered ``error`` code, a human ``error_description`` and a machine
``reason`` recorded in the ``ExchangeDenied`` event (finer than ``error``:
``depth_exceeded``, ``revoked``, ``subject_token_expired`` …).
"""

from __future__ import annotations

from collections.abc import Mapping


class OAuthError(Exception):
    """A refusal that becomes an RFC 6749 §5.2 JSON error response."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.reason = reason or error
        self.headers = dict(headers or {})


def invalid_request(description: str, reason: str = "invalid_request") -> OAuthError:
    """Malformed request, or an invalid/unacceptable subject or actor token (RFC 8693 §2.2.2)."""
    return OAuthError("invalid_request", description, reason=reason)


def invalid_client(description: str, *, basic: bool = False, reason: str = "invalid_client") -> OAuthError:
    """Client authentication failed: 401, with a Basic challenge when Basic was tried."""
    headers = {"WWW-Authenticate": 'Basic realm="baton", charset="UTF-8"'} if basic else {}
    return OAuthError("invalid_client", description, status=401, reason=reason, headers=headers)


def invalid_target(description: str, reason: str = "invalid_target") -> OAuthError:
    """The requested audience/resource is unknown or not allowed (RFC 8693 §2.2.2)."""
    return OAuthError("invalid_target", description, reason=reason)


def invalid_scope(description: str, reason: str = "invalid_scope") -> OAuthError:
    """The requested scope exceeds what may be granted."""
    return OAuthError("invalid_scope", description, reason=reason)


def unauthorized_client(description: str, reason: str = "unauthorized_client") -> OAuthError:
    """The client may not use this grant or this kind of exchange."""
    return OAuthError("unauthorized_client", description, reason=reason)


def unsupported_grant_type(description: str) -> OAuthError:
    """``grant_type`` is not token exchange."""
    return OAuthError("unsupported_grant_type", description)


def temporarily_unavailable(description: str, retry_after: int = 1) -> OAuthError:
    """A dependency (the event store) is down: 503 with ``Retry-After``, nothing issued."""
    return OAuthError(
        "temporarily_unavailable",
        description,
        status=503,
        reason="store_unavailable",
        headers={"Retry-After": str(retry_after)},
    )


def rate_limited(retry_after: int) -> OAuthError:
    """Too many requests for this client (or client and subject)."""
    return OAuthError(
        "slow_down",
        "rate limit exceeded; retry later",
        status=429,
        reason="rate_limited",
        headers={"Retry-After": str(max(1, retry_after))},
    )
