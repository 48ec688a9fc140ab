"""Strict parsing of ``application/x-www-form-urlencoded`` OAuth requests.

RFC 6749 §3.2: parameters sent without a value are treated as omitted and
request parameters must not be included more than once. Starlette's
``form.get()`` silently keeps the last of repeated fields and answers an
oversized body with a plain-text 400, so Baton reads the body itself.
Only ``audience`` and ``resource`` (RFC 8693 §2.1, RFC 8707) may repeat.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator
from urllib.parse import unquote_plus

from starlette.requests import Request

from .errors import OAuthError, invalid_request

MULTI_VALUED = frozenset({"audience", "resource"})


class Form:
    """A parsed OAuth form: single values by name, plus the repeatable ones as lists."""

    __slots__ = ("single", "multi")

    def __init__(self, single: dict[str, str], multi: dict[str, list[str]]) -> None:
        self.single = single
        self.multi = multi

    def get(self, name: str) -> str | None:
        """The value of a single-valued parameter, None when absent or empty."""
        return self.single.get(name)

    def require(self, name: str) -> str:
        """The value of a required parameter, else ``invalid_request``."""
        value = self.single.get(name)
        if value is None:
            raise invalid_request(f"missing required parameter: {name}", reason="missing_parameter")
        return value

    def getlist(self, name: str) -> list[str]:
        """All values of a repeatable parameter, in order."""
        return self.multi.get(name, [])


@functools.lru_cache(maxsize=256)
def _decode_short(text: str) -> str:
    return unquote_plus(text, errors="strict")


def _decode(text: str) -> str:
    # tokens are base64url and need no decoding; the short escaped values (grant and
    # token-type URNs) repeat on every request and are decoded once
    if "%" not in text and "+" not in text:
        return text
    return _decode_short(text) if len(text) <= 128 else unquote_plus(text, errors="strict")


def _pairs(text: str) -> Iterator[tuple[str, str]]:
    """``urllib.parse.parse_qsl(text, keep_blank_values=True, errors="strict")``, without its per-field overhead."""
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            yield _decode(name), _decode(value)


def parse_form_bytes(body: bytes, multi_valued: Collection[str] = MULTI_VALUED) -> Form:
    """Parse a urlencoded body; a repeated single-valued parameter is ``invalid_request``."""
    try:
        text = body.decode("utf-8")
        pairs = list(_pairs(text))
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_request("request body is not valid UTF-8 form data", reason="malformed_body") from exc
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise invalid_request("NUL characters are not allowed in parameters", reason="malformed_body")
        if name in multi_valued:
            if value:
                multi.setdefault(name, []).append(value)
            continue
        if name in seen:
            raise invalid_request(f"parameter {name} is repeated", reason="repeated_parameter")
        seen.add(name)
        if value:
            single[name] = value
    return Form(single, multi)


async def read_form(request: Request, max_bytes: int) -> Form:
    """Read and parse the request body of a token/introspection/revocation request."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise invalid_request(
            "content type must be application/x-www-form-urlencoded", reason="wrong_content_type"
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise invalid_request("invalid Content-Length", reason="malformed_body")
        if int(declared) > max_bytes:
            raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return parse_form_bytes(b"".join(chunks))


def _too_large(max_bytes: int) -> OAuthError:
    return OAuthError(
        "invalid_request", f"request body exceeds {max_bytes} bytes", status=400, reason="body_too_large"
    )
