"""Baton's configuration: one TOML file decoded by msgspec into typed structs.

An unknown key or a bad value stops start-up with a message that names the
key (``Expected `int`, got `str` - at `$.tokens.ttl```). Environment variables
override what a deployment keeps out of the file: ``BATON_STORE_URL``,
``BATON_CACHE_URL``, ``BATON_ISSUER`` …, and generically any key as
``BATON__SECTION__KEY`` (``BATON__TOKENS__TTL=600``; lists and tables as JSON).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

SigningAlgorithm = Literal["ES256", "RS256", "PS256", "EdDSA", "Ed25519"]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
ActorMode = Literal["token", "client"]
SubjectTokenKind = Literal["access_token", "jwt", "id_token"]

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending key."""


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Base of every config table: unknown keys are errors, values immutable."""


class ServerConfig(_Section):
    """How ``baton serve`` listens (hypercorn settings; see docs/configuration.md)."""

    host: str = "127.0.0.1"
    port: Port = 8000
    workers: PositiveInt = 1
    worker_class: Literal["asyncio", "uvloop"] = "asyncio"
    keep_alive_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    read_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    graceful_timeout: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    #: on SIGTERM/SIGINT, /readyz answers 503 for this long (still serving) before the listener closes
    drain_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 0.0
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1_048_576)] = 65_536
    trust_forwarded_for: bool = False
    #: after start-up, move every live object into the permanent GC generation (see app/gc_tuning.py)
    gc_freeze: bool = True
    #: allocations between young-generation collections while serving; 0 keeps CPython's 700
    gc_young_threshold: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 20_000


class StoreConfig(_Section):
    """Where the event log lives: ``sqlite:///path`` or ``postgresql://…``."""

    url: str = "sqlite:///baton-data/events.db"
    batch_max: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 256
    batch_wait_ms: Annotated[float, msgspec.Meta(ge=0, le=100)] = 0.0
    checkpoint_every: PositiveInt = 1000
    checkpoint_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    migrate_on_start: bool = True
    pool_min: PositiveInt = 1
    pool_max: PositiveInt = 10
    connect_timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 3.0
    command_timeout: Annotated[float, msgspec.Meta(gt=0, le=300)] = 5.0

    def postgres_options(self) -> dict[str, Any]:
        """Keyword options for the PostgreSQL backend."""
        return {
            "migrate": self.migrate_on_start,
            "pool_min": self.pool_min,
            "pool_max": self.pool_max,
            "connect_timeout": self.connect_timeout,
            "command_timeout": self.command_timeout,
        }


class CacheConfig(_Section):
    """Issuer metadata/JWKS cache, rate limits and replay cache: ``memory://`` or ``redis://…``."""

    url: str = "memory://"
    prefix: str = "baton:"
    jwks_min_ttl: Annotated[int, msgspec.Meta(ge=0)] = 60
    jwks_max_ttl: Annotated[int, msgspec.Meta(ge=1)] = 86_400
    jwks_max_stale: Annotated[int, msgspec.Meta(ge=0)] = 86_400
    unknown_kid_interval: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    fetch_timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 3.0
    fetch_max_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 262_144
    allow_loopback_http: bool = True
    rate_limit_policy: Literal["fail_open_local", "fail_closed"] = "fail_open_local"
    redis_timeout: Annotated[float, msgspec.Meta(gt=0, le=5)] = 0.5


class SigningConfig(_Section):
    """Baton's own signing keys."""

    algorithm: SigningAlgorithm = "ES256"
    keys: str = "baton-data/signing-keys.json"
    #: automatic schedule: add a next key when the active one is this many days old (0 = manual only)
    rotate_days: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    #: seconds a next key is published before it may sign; JWKS max-age is derived from it
    promote_after: Annotated[int, msgspec.Meta(ge=2)] = 3600
    #: seconds between checks of the key file for changes made by `baton keys` or another instance
    reload_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0

    def jwks_max_age(self) -> int:
        """``Cache-Control: max-age`` of ``/jwks``: short enough that every cache has seen a next key
        (published within ``reload_seconds`` on every instance) before ``promote_after`` lets it sign."""
        return max(1, min(300, int((self.promote_after - self.reload_seconds) / 2)))


class TokensConfig(_Section):
    """Lifetime and chaining limits of issued tokens."""

    ttl: PositiveInt = 300
    max_depth: NonNegativeInt = 3
    leeway: Annotated[int, msgspec.Meta(ge=0, le=60)] = 30
    max_subject_lifetime: PositiveInt = 86_400
    allow_lifetime_extension: bool = False


class TrustedIssuer(_Section):
    """An issuer whose tokens Baton accepts as subject or actor tokens."""

    issuer: str
    jwks_uri: str | None = None
    algorithms: list[str] = msgspec.field(default_factory=lambda: ["RS256", "ES256"])
    audiences: list[str] = msgspec.field(default_factory=list)
    token_types: list[SubjectTokenKind] = msgspec.field(
        default_factory=lambda: ["access_token", "jwt", "id_token"]
    )
    require_typ: bool = False


class JWKSet(_Section):
    """An inline JSON Web Key Set (public keys only)."""

    keys: list[dict[str, Any]]


class FederatedIdentity(_Section):
    """Service-principal federation: external ``iss`` + ``sub`` become ``principal``."""

    issuer: str
    subject: str
    principal: str


class ClientConfig(_Section):
    """A service allowed to call Baton, and what it may exchange for."""

    client_id: str
    auth_method: AuthMethod = "client_secret_basic"
    secret_hash: str | None = None
    jwks: JWKSet | None = None
    jwks_uri: str | None = None
    audiences: list[str] = msgspec.field(default_factory=list)
    scopes: list[str] = msgspec.field(default_factory=list)
    delegation: bool = True
    impersonation: bool = False
    actor: ActorMode = "token"
    subject_issuers: list[str] | None = None
    admin: bool = False
    audit: bool = False
    rate: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    burst: NonNegativeInt = 0
    subject_rate: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    subject_burst: NonNegativeInt = 0


class ClaimsMapping(_Section):
    """Claims copied, renamed or fixed when issuing a token for an audience."""

    copy: list[str] = msgspec.field(default_factory=list)
    rename: dict[str, str] = msgspec.field(default_factory=dict)
    set: dict[str, Any] = msgspec.field(default_factory=dict)


class AudienceConfig(_Section):
    """A target audience (a downstream service) Baton issues tokens for."""

    audience: str
    scopes: list[str] = msgspec.field(default_factory=list)
    resources: list[str] = msgspec.field(default_factory=list)
    ttl: PositiveInt | None = None
    max_depth: NonNegativeInt | None = None
    claims: ClaimsMapping = msgspec.field(default_factory=ClaimsMapping)


class ProjectionsConfig(_Section):
    """The asynchronous audit projections (one active runner across instances, by lease)."""

    run_audit: bool = True
    poll_interval: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.5
    batch_interval: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.1
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    lease_seconds: Annotated[float, msgspec.Meta(ge=1, le=600)] = 15.0


class AdminConfig(_Section):
    """Credential for the administrative HTTP endpoints (a hashed bearer secret)."""

    token_hash: str | None = None


class LoggingConfig(_Section):
    """structlog output."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Section):
    """The whole of ``baton.toml``."""

    issuer: str
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    cache: CacheConfig = msgspec.field(default_factory=CacheConfig)
    signing: SigningConfig = msgspec.field(default_factory=SigningConfig)
    tokens: TokensConfig = msgspec.field(default_factory=TokensConfig)
    trusted_issuers: list[TrustedIssuer] = msgspec.field(default_factory=list)
    clients: list[ClientConfig] = msgspec.field(default_factory=list)
    audiences: list[AudienceConfig] = msgspec.field(default_factory=list)
    federation: list[FederatedIdentity] = msgspec.field(default_factory=list)
    projections: ProjectionsConfig = msgspec.field(default_factory=ProjectionsConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    demo: bool = False


#: claims Baton sets itself; claim mapping may never write them
RESERVED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "act", "may_act", "cnf", "typ", "auth_time", "acr", "amr"}
)

ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "BATON_ISSUER": ("issuer",),
    "BATON_STORE_URL": ("store", "url"),
    "BATON_CACHE_URL": ("cache", "url"),
    "BATON_SIGNING_KEYS": ("signing", "keys"),
    "BATON_ADMIN_TOKEN_HASH": ("admin", "token_hash"),
}


#: prefix of the generic overrides: ``BATON__TOKENS__TTL=600`` sets ``tokens.ttl``
ENV_PREFIX = "BATON__"


def _field_type(path: tuple[str, ...], name: str) -> Any:
    """The declared type of the config key at ``path``; ConfigError naming ``name`` if there is none."""
    struct: Any = Config
    for depth, part in enumerate(path):
        fields = {f.name: f.type for f in msgspec.structs.fields(struct)}
        if part not in fields:
            raise ConfigError(f"{name}: no configuration key {'.'.join(path[: depth + 1])}")
        kind = fields[part]
        if depth == len(path) - 1:
            return kind
        struct = kind
        if not (isinstance(struct, type) and issubclass(struct, msgspec.Struct)):
            raise ConfigError(f"{name}: {'.'.join(path[: depth + 1])} is not a table")
    raise ConfigError(f"{name}: names no key")


def _env_value(name: str, text: str, kind: Any) -> Any:
    """``text`` converted to ``kind`` (lists and tables as JSON); errors name the variable."""
    try:
        if kind is str or kind == str | None:
            return text
        try:
            return msgspec.convert(text, kind, strict=False)
        except msgspec.ValidationError:
            if text.lstrip()[:1] in ("[", "{", '"'):
                return msgspec.convert(msgspec.json.decode(text), kind, strict=False)
            raise
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _set(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target = raw
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, path in ENV_OVERRIDES.items():
        value = environ.get(name)
        if value:
            _set(raw, path, value)
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX):
            path = tuple(part.lower() for part in name[len(ENV_PREFIX):].split("__"))
            value = _env_value(name, environ[name], _field_type(path, name))
            # converted values are plain data again, so the whole file is still validated in one place
            _set(raw, path, msgspec.to_builtins(value))


def _check(config: Config) -> Config:
    """Cross-field rules msgspec cannot express; each message names its key."""
    seen: set[str] = set()
    for i, client in enumerate(config.clients):
        where = f"clients[{i}] ({client.client_id!r})"
        if client.client_id in seen:
            raise ConfigError(f"{where}: duplicate client_id")
        seen.add(client.client_id)
        if client.auth_method == "private_key_jwt":
            if not (client.jwks or client.jwks_uri):
                raise ConfigError(f"{where}.jwks: private_key_jwt needs jwks or jwks_uri")
        elif not client.secret_hash:
            raise ConfigError(f"{where}.secret_hash: required for {client.auth_method}")
    issuers = [t.issuer for t in config.trusted_issuers]
    if len(set(issuers)) != len(issuers):
        raise ConfigError("trusted_issuers: an issuer is listed twice")
    if config.issuer in issuers:
        raise ConfigError("trusted_issuers: Baton's own issuer is trusted implicitly; remove it")
    names = [a.audience for a in config.audiences]
    if len(set(names)) != len(names):
        raise ConfigError("audiences: an audience is listed twice")
    for i, client in enumerate(config.clients):
        unknown = [a for a in client.audiences if a not in names]
        if unknown:
            raise ConfigError(f"clients[{i}].audiences: not configured under [[audiences]]: {unknown}")
    for i, audience in enumerate(config.audiences):
        mapping = audience.claims
        targets = set(mapping.copy) | set(mapping.rename.values()) | set(mapping.set)
        reserved = sorted(targets & RESERVED_CLAIMS)
        if reserved:
            raise ConfigError(f"audiences[{i}].claims: may not write reserved claims {reserved}")
    if config.signing.promote_after <= 2 * config.signing.reload_seconds:
        raise ConfigError("signing.promote_after: must exceed twice signing.reload_seconds")
    if config.cache.jwks_min_ttl > config.cache.jwks_max_ttl:
        raise ConfigError("cache.jwks_min_ttl: larger than cache.jwks_max_ttl")
    return config


def load_config(source: str | Path | bytes, environ: Mapping[str, str] | None = None) -> Config:
    """Decode ``baton.toml`` (a path or the TOML bytes), apply environment overrides, validate."""
    environ = os.environ if environ is None else environ
    if isinstance(source, bytes):
        text = source
    else:
        try:
            text = Path(source).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {source}: {exc.strerror}") from exc
    try:
        raw = msgspec.toml.decode(text)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"configuration is not valid TOML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("configuration must be a TOML table")
    _apply_env(raw, environ)
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
    return _check(config)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build a validated config from a mapping (tests, demo and bench build configs this way)."""
    try:
        return _check(msgspec.convert(raw, Config))
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
