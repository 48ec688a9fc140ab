"""Everything one Baton process holds while it runs, built once at start-up.

Parsed keys, compiled policy, encoders, the HTTP client for issuer fetches,
the cache, the event store with its inline lineage projection: created in
:meth:`Runtime.start`, released in :meth:`Runtime.stop`. Request handlers
only read from it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import structlog

from eventstore import ClientAuthFailed, ExchangeDenied, StoreUnavailable, open_store
from eventstore.checkpoints import CHECKPOINT_TYP, Checkpointer
from eventstore.store import EventStore
from projections.audit import AuditProjection
from projections.lineage import LineageProjection, LineageReader
from projections.runner import ProjectionRunner

from .cache import Cache
from .cache_factory import open_cache
from .client_auth import ClientAuthenticator
from .config import Config
from .errors import OAuthError
from .exchange import DenialContext, TokenExchanger
from .issuers import IssuerRegistry
from .key_file import KeyFileWatcher
from .key_schedule import KeyScheduler
from .lineage_batch import BatchedLineageReader
from .keys import KeyRing, KeyRingSigner
from .logs import configure_logging
from .metrics import observe_batch, observe_keys, watch_cache
from .policy import Policy

log = structlog.get_logger("baton")


class Runtime:
    """The live objects of one Baton instance."""

    config: Config
    keyring: KeyRing
    cache: Cache
    store: EventStore
    http: httpx.AsyncClient
    issuers: IssuerRegistry
    authenticator: ClientAuthenticator
    policy: Policy
    lineage: LineageReader
    exchanger: TokenExchanger

    def __init__(self, config: Config, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._given_http = http
        self.token_endpoint = config.issuer.rstrip("/") + "/token"
        self.draining = False
        self.started_at = time.time()
        # created now (no connection yet) so routes can hold it; opened in start()
        self.store = open_store(
            config.store.url,
            [LineageProjection()],
            max_batch=config.store.batch_max,
            max_wait=config.store.batch_wait_ms / 1000.0,
            **(config.store.postgres_options() if config.store.url.startswith("postgres") else {}),
        )

    async def start(self) -> None:
        """Load keys, open the cache and the store, build the exchange pipeline."""
        config = self.config
        configure_logging(config.logging.level, config.logging.format)
        self.keyring = KeyRing.load_or_create(config.signing.keys, config.signing.algorithm)
        self._adopt_keys(self.keyring)
        self.key_watcher = KeyFileWatcher(config.signing.keys, self._adopt_keys, config.signing.reload_seconds)
        self.key_watcher.start()
        self.cache = open_cache(config.cache)
        watch_cache(self.cache)
        await self.store.open()
        committer = getattr(self.store, "committer", None)
        if committer is not None:
            committer.on_batch = observe_batch
        self.http = self._given_http or httpx.AsyncClient(
            timeout=config.cache.fetch_timeout, follow_redirects=False, trust_env=False
        )
        self.issuers = IssuerRegistry(config, self.cache, self.http, local_keys=lambda: self.keyring.verification_keys())
        self.authenticator = ClientAuthenticator(config, self.cache, self.http)
        self.policy = Policy(config)
        self.lineage = BatchedLineageReader(self.store)  # concurrent lookups share one query
        self.exchanger = TokenExchanger(
            config, self.policy, lambda: self.keyring, self.issuers, self.lineage, self.store, self.cache
        )
        self.checkpointer = Checkpointer(
            self.store,
            KeyRingSigner(lambda: self.keyring, CHECKPOINT_TYP),
            every=config.store.checkpoint_every,
            seconds=config.store.checkpoint_seconds,
        )
        self.checkpointer.start()
        self._projections_stop = asyncio.Event()
        self._projections_task: asyncio.Task[None] | None = None
        if config.projections.run_audit:
            self._projections_task = asyncio.get_running_loop().create_task(
                self._run_projections(), name="baton-audit-projections"
            )
        self.key_scheduler: KeyScheduler | None = None
        if config.signing.rotate_days > 0:
            self.key_scheduler = KeyScheduler(config, self.store)
            self.key_scheduler.start()
        if config.demo:
            log.warning("demo_mode", message="DEMO MODE: built-in identity provider enabled; never use in production")
        log.info("baton_started", issuer=config.issuer, store=config.store.url.split(":", 1)[0], kid=self.keyring.kid)

    async def stop(self) -> None:
        """Finish queued appends and close connections."""
        self.draining = True
        await self.key_watcher.stop()
        if self.key_scheduler is not None:
            await self.key_scheduler.stop()
        await self.checkpointer.stop(final=True)
        await self._stop_projections()
        for closer in (self.store.close, self.issuers.aclose, self.http.aclose, self.cache.close):
            try:
                await closer()
            except Exception as exc:  # shutting down: report, keep closing the rest
                log.warning("shutdown_error", component=getattr(closer, "__qualname__", "?"), error=type(exc).__name__)

    @property
    def creates_schema(self) -> bool:
        """False when ``baton migrate`` manages the PostgreSQL schema (``migrate_on_start = false``, a runtime role)."""
        return self.config.store.migrate_on_start or not self.config.store.url.startswith("postgres")

    def _adopt_keys(self, ring: KeyRing) -> None:
        """Swap in a (re)loaded key ring; readers go through ``self.keyring``, so one assignment is atomic."""
        self.keyring = ring
        observe_keys([str(k.get("baton_state", "active")) for k in ring.private_keys()])

    async def _stop_projections(self) -> None:
        """Let the audit runner finish its batch and give up its lease while the store is still open.

        A successor instance then takes the lease at once instead of after ``lease_seconds``.
        """
        self._projections_stop.set()
        task, self._projections_task = self._projections_task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(task, timeout=self.config.projections.lease_seconds)
        except TimeoutError:  # wait_for has cancelled it (its batch rolls back; it still tries to release the lease)
            log.warning("shutdown_error", component="projection_runner", error="TimeoutError")
        except Exception as exc:  # shutting down: report, keep closing the rest
            log.warning("shutdown_error", component="projection_runner", error=type(exc).__name__)

    async def _run_projections(self) -> None:
        """Keep the audit views caught up; restart the runner after a failure (e.g. store down at start)."""
        settings = self.config.projections
        while not self._projections_stop.is_set():
            runner = ProjectionRunner(
                self.store,
                [AuditProjection()],
                batch_size=settings.batch_size,
                lease_seconds=settings.lease_seconds,
                poll_interval=settings.poll_interval,
                batch_interval=settings.batch_interval,
                create_schema=self.creates_schema,
            )
            try:
                await runner.run(self._projections_stop)
            except Exception as exc:  # the runner must never take the instance down
                log.warning("projection_runner_failed", error=type(exc).__name__)
                try:
                    await asyncio.wait_for(self._projections_stop.wait(), timeout=5.0)
                except TimeoutError:
                    pass

    async def record_denial(
        self, error: OAuthError, request_id: str, endpoint: str, source: str | None, ctx: DenialContext
    ) -> None:
        """Append ``ExchangeDenied`` (or ``ClientAuthFailed``) for a refusal; never masks the refusal."""
        now = time.time()
        event: Any
        if error.error == "invalid_client":
            event = ClientAuthFailed(
                at=now, request_id=request_id, endpoint=endpoint, client_id=ctx.client_id,
                method=None, reason=error.reason, source_address=source,
            )
        else:
            event = ExchangeDenied(
                at=now, request_id=request_id, endpoint=endpoint, client_id=ctx.client_id, error=error.error,
                reason=error.reason, description=error.description, subject_iss=ctx.subject_iss,
                subject_sub=ctx.subject_sub, subject_jti=ctx.subject_jti, actor_sub=ctx.actor_sub,
                audience=ctx.audience, scope=ctx.scope, source_address=source,
            )
        # a caller that did not authenticate never writes into a real client's stream
        stream = f"client-{ctx.client_id}" if ctx.authenticated and ctx.client_id else "client-unauthenticated"
        try:
            await self.store.append(stream, [event], event_ids=[uuid.uuid4().hex])
        except StoreUnavailable:
            log.warning("denial_not_recorded", reason=error.reason, request_id=request_id)
