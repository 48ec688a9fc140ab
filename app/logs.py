"""structlog set-up: JSON lines in production, a console renderer in a terminal.

Configured once per process. A redaction processor drops any field whose
name suggests token material or secrets, and masks strings that look like
a JWT, so no token, assertion or secret ever reaches a log line.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import msgspec
import structlog

SENSITIVE_KEYS = frozenset(
    {
        "access_token", "subject_token", "actor_token", "token", "client_secret", "client_assertion",
        "secret", "password", "authorization", "assertion", "private_key", "d",
    }
)
_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_configured = False
#: JSON lines by msgspec (several times faster than the json module); anything it cannot encode becomes str
_encode_json = msgspec.json.Encoder(enc_hook=str).encode


def _json_line(event_dict: dict[str, Any], **_kw: Any) -> bytes:
    return _encode_json(event_dict)


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: remove secrets and JWT-shaped strings from a log event."""
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = "[redacted]"
            continue
        value = event_dict[key]
        if isinstance(value, str) and "eyJ" in value:
            event_dict[key] = _JWT_LIKE.sub("[redacted-jwt]", value)
    return event_dict


class _UtcStamper:
    """structlog processor: ``timestamp`` in ISO 8601 UTC with microseconds (``…T13:50:01.123456Z``).

    The date and time up to the second are formatted once a second; structlog's own ISO
    stamper builds a ``datetime`` for every line.
    """

    def __init__(self) -> None:
        # the second and its text as one value: threads that log (to_thread, SQLite's writer) read a matching pair
        self._cached = (-1, "")

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        second = int(now)
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        event_dict["timestamp"] = f"{cached[1]}.{int((now - second) * 1_000_000):06d}Z"
        return event_dict


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog once (idempotent): level and ``json`` / ``console`` / ``auto`` format."""
    global _configured
    if _configured:
        return
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer(serializer=_json_line)
    )
    # the console renderer yields text, the JSON one bytes
    factory: Any = (
        structlog.PrintLoggerFactory(file=sys.stderr) if use_console else structlog.BytesLoggerFactory(file=sys.stderr.buffer)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _UtcStamper(),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    _configured = True
