"""Safe fetching of issuer metadata and key sets (and client ``jwks_uri``).

Only ``https`` (plus ``http`` to a loopback address when allowed, for local
development and tests); no redirects; one overall deadline; a byte cap on the
streamed body; address literals in private or link-local ranges refused unless
allowed. Host *names* are not resolved here, so a name pointing at a private
address is only as safe as the deployment's DNS and egress rules.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from urllib.parse import urlsplit

import httpx

from app.jose_strict import loads_strict

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|=|$)", re.IGNORECASE)


class FetchError(Exception):
    """A document could not be fetched or is unusable; the message says why (never secrets)."""


def cache_ttl(cache_control: str | None) -> int | None:
    """Seconds from ``Cache-Control: max-age`` (0 for no-store/no-cache), None when absent."""
    if not cache_control:
        return None
    if _NO_CACHE.search(cache_control):
        return 0
    match = _MAX_AGE.search(cache_control)
    return int(match.group(1)) if match else None


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_loopback_http: bool, allow_private: bool = False) -> None:
    """Refuse URLs Baton must never fetch; raise :class:`FetchError` naming the rule."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise FetchError(f"not a valid URL: {url[:200]!r}") from exc
    if not host:
        raise FetchError(f"URL has no host: {url[:200]!r}")
    if parts.username is not None or parts.password is not None:
        raise FetchError("URL must not carry credentials")
    loopback = _is_loopback_host(host)
    if parts.scheme == "http":
        if not (allow_loopback_http and loopback):
            raise FetchError(f"only https is allowed (http only to loopback when enabled): {url[:200]!r}")
    elif parts.scheme != "https":
        raise FetchError(f"only https is allowed: {url[:200]!r}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if loopback and (allow_loopback_http or allow_private):
        return
    if not address.is_global and not allow_private:
        raise FetchError(f"refusing to fetch from a non-public address: {host}")


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"response larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise FetchError(f"response larger than {max_bytes} bytes")
    return bytes(body)


async def _get(client: httpx.AsyncClient, url: str, timeout: float, max_bytes: int) -> tuple[bytes, int | None]:
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    async with client.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=False) as response:
        if response.is_redirect or 300 <= response.status_code < 400:
            raise FetchError(f"redirect refused (HTTP {response.status_code}) from {url[:200]}")
        if response.status_code != 200:
            raise FetchError(f"HTTP {response.status_code} from {url[:200]}")
        body = await _read_capped(response, max_bytes)
        return body, cache_ttl(response.headers.get("cache-control"))


async def fetch_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    allow_loopback_http: bool,
    allow_private: bool = False,
) -> tuple[dict, int | None]:
    """GET a JSON object; return it and the TTL from ``Cache-Control`` (None if absent).

    ``timeout`` bounds the whole exchange, so a server dripping bytes cannot
    hold a request longer than that. Any failure is a :class:`FetchError`.
    """
    check_url(url, allow_loopback_http=allow_loopback_http, allow_private=allow_private)
    try:
        async with asyncio.timeout(timeout):
            body, ttl = await _get(client, url, timeout, max_bytes)
    except TimeoutError as exc:
        raise FetchError(f"timed out after {timeout} s fetching {url[:200]}") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"cannot fetch {url[:200]}: {type(exc).__name__}") from exc
    except OSError as exc:
        raise FetchError(f"cannot fetch {url[:200]}: {exc.strerror or type(exc).__name__}") from exc
    try:
        document = loads_strict(body)
    except (ValueError, RecursionError) as exc:
        raise FetchError(f"{url[:200]} did not return valid JSON") from exc
    if not isinstance(document, dict):
        raise FetchError(f"{url[:200]} did not return a JSON object")
    return document, ttl
