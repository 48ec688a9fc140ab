"""Fault scenarios under load against real ``baton serve`` processes (run from a checkout).

Each scenario starts Baton processes over a fake OIDC issuer served on
loopback, drives exchanges at them, injects one fault, and then checks what
Baton promises: every token any client received has exactly one
``TokenExchanged`` event (matched by SHA-256), positions are contiguous and
the hash chain verifies. Traffic goes to 127.0.0.1 only; every loop is bounded.

Scenarios (``python -m ops.faults NAME [--scale N]``):

- ``pg-kill``: PostgreSQL backends of Baton's own database terminated mid-load
  (``pg_terminate_backend``; the shared server itself is never stopped).
- ``pg-outage``: PostgreSQL unreachable for a while (a TCP proxy in front of
  it is closed): 503 ``temporarily_unavailable`` with ``Retry-After``, then
  recovery on its own.
- ``redis-down``: Baton's own ``redis-server`` killed mid-load and restarted:
  exchanges go on, a replayed ``private_key_jwt`` assertion stays refused.
- ``jwks``: the issuer's JWKS turns slow, then down, then rotates its key;
  an unknown-``kid`` storm causes at most one fetch.
- ``two-instances``: two Baton processes on one PostgreSQL and Redis, one
  restarted under load: no failed request, one chain.
- ``graceful``: SIGTERM with a request in flight: readiness drops first, the
  request finishes.
- ``slow-clients``: a client that stops sending is cut off within
  ``read_timeout`` + ``keep_alive_timeout``; oversized headers are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from app.keys import KeyRing
from app.secrets import hash_secret
from app.types import CLIENT_ASSERTION_TYPE_JWT, GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN
from eventstore import open_store
from eventstore.verify import verify
from ops.config_files import free_port, toml_text
from tests.support.fake_issuer import FakeIssuer, new_key, sign
from tests.support.live_server import run_asgi

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("BATON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "fault-secret"
HEALTHY = (200,)


# --------------------------------------------------------------------------- configuration


@dataclass
class Setup:
    """What a scenario's Baton processes share: directory, issuer, store, cache, client key."""

    workdir: Path
    idp: FakeIssuer
    store_url: str
    cache_url: str = "memory://"
    client_key: Any = field(default_factory=lambda: new_key("ES256", "fault-client"))
    server: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def keys_path(self) -> Path:
        """The signing key file every instance shares."""
        return self.workdir / "signing-keys.json"

    def config(self, port: int) -> dict[str, Any]:
        """The configuration of one instance listening on ``port``."""
        public = dict(self.client_key.as_dict(private=False), kid=self.client_key.kid)
        return {
            "issuer": "https://baton.faults",
            "server": {"port": port, "read_timeout": 2.0, "graceful_timeout": 5.0, **self.server},
            "store": {"url": self.store_url, "checkpoint_every": 50},
            "cache": {"url": self.cache_url, "fetch_timeout": 1.0, "unknown_kid_interval": 30.0, **self.cache},
            "signing": {"keys": str(self.keys_path)},
            "logging": {"level": "warning", "format": "json"},
            "tokens": {"ttl": 300},
            "trusted_issuers": [{"issuer": self.idp.issuer, "algorithms": ["ES256"], "audiences": ["baton"]}],
            "audiences": [{"audience": "orders", "scopes": ["orders:read"]}],
            "clients": [
                {"client_id": "loader", "secret_hash": _secret_hash(), "audiences": ["orders"],
                 "scopes": ["orders:read"], "impersonation": True},
                {"client_id": "signer", "auth_method": "private_key_jwt", "jwks": {"keys": [public]},
                 "audiences": ["orders"], "scopes": ["orders:read"], "impersonation": True},
            ],
        }


_HASH: list[str] = []


def _secret_hash() -> str:
    if not _HASH:
        _HASH.append(hash_secret(SECRET, log_n=10))
    return _HASH[0]


# --------------------------------------------------------------------------- processes


#: what ``baton serve --config FILE`` runs (without building the whole command line parser)
_SERVE = "import sys; from ops.cmd_server import _serve_file; sys.exit(_serve_file(sys.argv[1]))"


class BatonProcess:
    """One ``baton serve`` process on its own port."""

    def __init__(self, setup: Setup, name: str) -> None:
        self.setup = setup
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = setup.workdir / f"{name}.toml"
        self.log_path = setup.workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until /readyz answers 200."""
        self.config_path.write_text(toml_text(self.setup.config(self.port)))
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(self.config_path)],
            cwd=REPO, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"baton exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"baton on {self.url} not ready: {self.log_path.read_text()[-2000:]}")

    def terminate(self) -> None:
        """Send SIGTERM (graceful shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit (SIGKILL after ``timeout``); its exit code."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def stop(self) -> int:
        """SIGTERM, then wait."""
        self.terminate()
        return self.wait()

    async def astart(self) -> None:
        """:meth:`start` without blocking the event loop (the load and proxies keep running)."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> int:
        """:meth:`stop` without blocking the event loop."""
        return await asyncio.to_thread(self.stop)


@contextlib.contextmanager
def fake_issuer() -> Iterator[FakeIssuer]:
    """A fake OIDC issuer on a loopback port (its ``issuer`` is its URL)."""
    idp = FakeIssuer("http://placeholder")
    with run_asgi(idp.app) as url:
        idp.issuer = url
        yield idp


class RedisServer:
    """A private ``redis-server`` on a free port (never the shared one), stoppable and restartable."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart on the same port) and wait for PONG."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self._workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """Stop it abruptly (SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A throwaway database on the shared PostgreSQL server; dropped (with its sessions) afterwards."""
    import asyncpg

    name = f"baton_faults_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_URL, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def terminate_backends(dsn: str) -> int:
    """``pg_terminate_backend`` every other session of ``dsn``'s database; how many were killed."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return len(await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"))
    finally:
        await conn.close()


# --------------------------------------------------------------------------- load


@dataclass
class Outcome:
    """One client request: status (0: transport failure), the token's SHA-256 if one came back."""

    status: int
    token_sha256: str | None = None
    retry_after: str | None = None
    error: str | None = None
    instance: str = ""


@dataclass
class Load:
    """Concurrent clients exchanging user tokens until stopped (bounded by ``max_requests``)."""

    idp: FakeIssuer
    urls: list[str]
    concurrency: int = 4
    max_requests: int = 100_000
    outcomes: list[Outcome] = field(default_factory=list)
    kid: Callable[[], str | None] = lambda: None
    #: route only to instances whose /readyz answered 200 last time (as a load balancer does)
    follow_readiness: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _ready: dict[str, bool] = field(default_factory=dict)

    def _targets(self) -> list[str]:
        ready = [u for u in self.urls if self._ready.get(u, True)]
        return ready or self.urls

    async def _probe(self) -> None:
        async with httpx.AsyncClient(timeout=1) as http:
            while not self._stop.is_set():
                for url in self.urls:
                    try:
                        self._ready[url] = (await http.get(url + "/readyz")).status_code == 200
                    except httpx.HTTPError:
                        self._ready[url] = False
                await asyncio.sleep(0.05)

    def token(self) -> str:
        """A fresh user token from the issuer (its newest key unless ``kid`` says otherwise)."""
        claims = self.idp.claims(sub=f"user-{uuid.uuid4().hex[:8]}", scope="orders:read")
        return self.idp.mint(claims, kid=self.kid())

    async def _one(self, http: httpx.AsyncClient, index: int) -> Outcome:
        form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": self.token(),
                "subject_token_type": TT_ACCESS_TOKEN, "audience": "orders"}
        last = Outcome(0)
        # like a load balancer: a connection refused (instance gone) is retried on the next instance
        for attempt in range(len(self.urls) * 2):
            targets = self._targets()
            url = targets[(index + attempt) % len(targets)]
            try:
                response = await http.post(url + "/token", data=form, auth=("loader", SECRET))
            except httpx.ConnectError as exc:
                last = Outcome(0, error=f"connect: {exc}", instance=url)
                await asyncio.sleep(0.05)
                continue
            except httpx.HTTPError as exc:
                return Outcome(0, error=f"{type(exc).__name__}: {exc}", instance=url)
            sha = None
            if response.status_code == 200:
                sha = hashlib.sha256(response.json()["access_token"].encode()).hexdigest()
            return Outcome(response.status_code, sha, response.headers.get("retry-after"), instance=url)
        return last

    async def _client(self, worker: int) -> None:
        async with httpx.AsyncClient(timeout=15, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            index = worker
            while not self._stop.is_set() and len(self.outcomes) < self.max_requests:
                self.outcomes.append(await self._one(http, index))
                index += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        """Run the clients for the duration of the block."""
        tasks = [asyncio.create_task(self._client(i)) for i in range(self.concurrency)]
        if self.follow_readiness:
            tasks.append(asyncio.create_task(self._probe()))
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)

    def count(self, status: int) -> int:
        """Outcomes with ``status``."""
        return sum(1 for o in self.outcomes if o.status == status)

    def failures(self, allowed: tuple[int, ...] = HEALTHY) -> list[Outcome]:
        """Outcomes whose status is not in ``allowed``."""
        return [o for o in self.outcomes if o.status not in allowed]


async def settle(seconds: float, load: Load, at_least: int = 0) -> None:
    """Let the load run ``seconds`` (and until ``at_least`` more outcomes, bounded by 30 s)."""
    target = len(load.outcomes) + at_least
    deadline = time.monotonic() + 30
    await asyncio.sleep(seconds)
    while len(load.outcomes) < target and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- the log afterwards


@dataclass
class LogCheck:
    """The promises about the event log, checked after a scenario."""

    events: int
    exchanged: int
    received: int
    missing: list[str]
    duplicated: list[str]
    contiguous: bool
    chain_ok: bool
    problem: str | None

    @property
    def ok(self) -> bool:
        """Every received token has exactly one event, positions are gap-free, the chain verifies."""
        return not self.missing and not self.duplicated and self.contiguous and self.chain_ok


async def check_log(store_url: str, keys_path: Path, outcomes: list[Outcome]) -> LogCheck:
    """Match received tokens to ``TokenExchanged`` events by SHA-256; check positions and the chain."""
    store = open_store(store_url, migrate=False) if store_url.startswith("postgres") else open_store(store_url)
    await store.open()
    try:
        head, _ = await store.head()
        records = await store.read_all(1, head + 1)
        report = await verify(store, KeyRing.load_or_create(keys_path, "ES256").verification_keys())
    finally:
        await store.close()
    hashes: dict[str, int] = {}
    for record in records:
        if record.event_type == "TokenExchanged":
            hashes[record.event.token_sha256] = hashes.get(record.event.token_sha256, 0) + 1
    received = [o.token_sha256 for o in outcomes if o.token_sha256]
    return LogCheck(
        events=len(records),
        exchanged=sum(hashes.values()),
        received=len(received),
        missing=[h for h in received if h not in hashes],
        duplicated=[h for h in received if hashes.get(h, 0) > 1] + [h for h in set(received) if received.count(h) > 1],
        contiguous=[r.position for r in records] == list(range(1, head + 1)),
        chain_ok=report.ok,
        problem=str(report.problem) if report.problem else None,
    )


# --------------------------------------------------------------------------- scenarios


@dataclass
class Result:
    """What a scenario observed; ``ok`` is the verdict, ``facts`` the numbers behind it."""

    name: str
    ok: bool
    facts: dict[str, Any]


async def scenario_pg_kill(workdir: Path, scale: int = 1) -> Result:
    """PostgreSQL sessions terminated mid-load: only 200 or 503 (+Retry-After), then recovery, log intact."""
    async with pg_database() as dsn:
        with fake_issuer() as idp:
            setup = Setup(workdir, idp, dsn)
            baton = BatonProcess(setup, "pg-kill")
            await baton.astart()
            load = Load(idp, [baton.url], concurrency=4)
            try:
                async with load.running():
                    await settle(0.5, load, at_least=10)
                    killed = 0
                    for _ in range(3 * scale):
                        killed += await terminate_backends(dsn)
                        await settle(0.3, load)
                    before = len(load.outcomes)
                    await settle(1.0, load, at_least=10)
                    recovered = sum(1 for o in load.outcomes[before:] if o.status == 200)
            finally:
                await baton.astop()
            log = await check_log(dsn, setup.keys_path, load.outcomes)
    bad = load.failures((200, 503))
    unavailable = [o for o in load.outcomes if o.status == 503]
    ok = (not bad and all(o.retry_after for o in unavailable) and recovered > 0 and log.ok and killed > 0)
    return Result("pg-kill", ok, {"requests": len(load.outcomes), "issued": load.count(200), "503": len(unavailable),
                                  "other": [(o.status, o.error) for o in bad][:5], "killed": killed,
                                  "recovered": recovered, "log": log.__dict__ | {"missing": len(log.missing)}})


async def scenario_pg_outage(workdir: Path, scale: int = 1) -> Result:
    """PostgreSQL unreachable (proxy closed) mid-load: 503 with Retry-After during, recovery after, log intact."""
    from tests.pg.proxy import FlakyProxy

    async with pg_database() as dsn:
        host_part = dsn.split("@", 1)[1]
        proxy = FlakyProxy("127.0.0.1", int(host_part.split("/")[0].split(":")[1]))
        await proxy.start()
        proxied = dsn.replace(host_part.split("/")[0], f"127.0.0.1:{proxy.port}")
        with fake_issuer() as idp:
            setup = Setup(workdir, idp, proxied)
            baton = BatonProcess(setup, "pg-outage")
            await baton.astart()
            load = Load(idp, [baton.url], concurrency=4)
            try:
                async with load.running():
                    await settle(0.5, load, at_least=10)
                    await proxy.stop()
                    start = len(load.outcomes)
                    await settle(1.0 * scale, load, at_least=5)
                    during = load.outcomes[start:]
                    await proxy.start()
                    await settle(1.5, load)
                    recovered_from = len(load.outcomes)
                    await settle(0.5, load, at_least=10)
                    after = load.outcomes[recovered_from:]
            finally:
                await baton.astop()
                await proxy.stop()
        log = await check_log(dsn, setup.keys_path, load.outcomes)
    unavailable = [o for o in during if o.status == 503]
    ok = (bool(unavailable) and all(o.retry_after for o in unavailable) and not load.failures((200, 503))
          and after and all(o.status == 200 for o in after) and log.ok)
    return Result("pg-outage", ok, {"requests": len(load.outcomes), "during": len(during), "503": len(unavailable),
                                    "after_ok": sum(o.status == 200 for o in after), "after": len(after),
                                    "log": log.__dict__ | {"missing": len(log.missing)}})


def _assertion(setup: Setup) -> str:
    now = int(time.time())
    claims = {"iss": "signer", "sub": "signer", "aud": "https://baton.faults/token", "iat": now, "exp": now + 60,
              "jti": uuid.uuid4().hex}
    return sign({"alg": "ES256", "kid": setup.client_key.kid}, claims, setup.client_key)


async def _assertion_status(url: str, assertion: str) -> int:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(url + "/introspect", data={
            "token": "x", "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT, "client_assertion": assertion})
        return response.status_code


async def scenario_redis_down(workdir: Path, scale: int = 1) -> Result:
    """Redis killed mid-load: exchanges continue (fail_open_local), replays stay refused, recovery on restart."""
    redis = RedisServer(workdir)
    redis.start()
    try:
        with fake_issuer() as idp:
            setup = Setup(workdir, idp, f"sqlite:///{workdir}/redis-down.db", cache_url=redis.url,
                          cache={"prefix": f"faults-{uuid.uuid4().hex[:6]}:"})
            baton = BatonProcess(setup, "redis-down")
            await baton.astart()
            load = Load(idp, [baton.url], concurrency=4)
            replay_before = _assertion(setup)
            first = await _assertion_status(baton.url, replay_before)
            try:
                async with load.running():
                    await settle(0.5, load, at_least=10)
                    redis.kill()
                    start = len(load.outcomes)
                    await settle(1.0 * scale, load, at_least=10)
                    during = load.outcomes[start:]
                    replay_during = _assertion(setup)
                    outage_first = await _assertion_status(baton.url, replay_during)
                    outage_replay = await _assertion_status(baton.url, replay_during)
                    old_replay = await _assertion_status(baton.url, replay_before)
                    await asyncio.to_thread(redis.start)
                    await settle(1.5, load, at_least=10)
                    async with httpx.AsyncClient() as http:
                        ready = (await http.get(baton.url + "/readyz")).json()
                    after_replay = await _assertion_status(baton.url, replay_during)
            finally:
                await baton.astop()
            log = await check_log(setup.store_url, setup.keys_path, load.outcomes)
    finally:
        redis.kill()
    ok = (first == 200 and outage_first == 200 and outage_replay == 401 and old_replay == 401
          and after_replay == 401 and not load.failures() and bool(during) and ready.get("cache") == "ok" and log.ok)
    return Result("redis-down", ok, {"requests": len(load.outcomes), "during_outage": len(during),
                                     "failures": len(load.failures()), "replay_statuses":
                                     [first, outage_first, outage_replay, old_replay, after_replay],
                                     "readyz_after": ready, "log": log.__dict__ | {"missing": len(log.missing)}})


async def _storm(url: str, idp: FakeIssuer, count: int) -> list[int]:
    """``count`` exchanges whose tokens name kids the issuer never published; their statuses."""
    statuses = []
    async with httpx.AsyncClient(timeout=10) as http:
        for i in range(count):
            token = idp.mint(idp.claims(scope="orders:read"), header_overrides={"kid": f"storm-{i}"})
            response = await http.post(url + "/token", auth=("loader", SECRET), data={
                "grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": token,
                "subject_token_type": TT_ACCESS_TOKEN, "audience": "orders"})
            statuses.append(response.status_code)
    return statuses


async def scenario_jwks(workdir: Path, scale: int = 1) -> Result:
    """Issuer JWKS slow, then down (cached keys keep serving), back, then rotating (new key picked up);
    an unknown-kid storm causes at most one fetch per ``unknown_kid_interval``."""
    interval = 1.0
    with fake_issuer() as idp:
        idp.cache_control = "max-age=1"  # keys expire during the run, so refreshes meet the faults
        setup = Setup(workdir, idp, f"sqlite:///{workdir}/jwks.db",
                      cache={"jwks_min_ttl": 1, "fetch_timeout": 1.0, "unknown_kid_interval": interval})
        idp.slow_seconds = 5.0
        baton = BatonProcess(setup, "jwks")
        await baton.astart()
        load = Load(idp, [baton.url], concurrency=2)
        phases: dict[str, list[int]] = {}

        async def phase(name: str, seconds: float) -> None:
            start = len(load.outcomes)
            await settle(seconds, load, at_least=5)
            phases[name] = [o.status for o in load.outcomes[start:]]

        try:
            async with load.running():
                await phase("normal", 1.5 * scale)
                idp.mode = "slow"
                await phase("slow", 2.0 * scale)
                idp.mode = "down"
                await phase("down", 1.5 * scale)
                idp.mode, idp.cache_control = "normal", "max-age=300"
                await phase("back", interval * 2)
                idp.rotate()
                await phase("rotated", 1.5 * scale)
            fetches = idp.jwks_fetches + idp.discovery_fetches
            started = time.monotonic()
            storm = await _storm(baton.url, idp, 50 * scale)
            storm_seconds = time.monotonic() - started
            storm_fetches = (idp.jwks_fetches + idp.discovery_fetches - fetches) // 2  # discovery + JWKS = one refresh
        finally:
            await baton.astop()
        log = await check_log(setup.store_url, setup.keys_path, load.outcomes)
    allowed = 1 + int(storm_seconds / interval)
    ok = (all(s == 200 for p in phases.values() for s in p) and all(phases.values())
          and set(storm) == {400} and storm_fetches <= allowed and log.ok)
    return Result("jwks", ok, {"phases": {k: (len(v), sum(s == 200 for s in v)) for k, v in phases.items()},
                               "storm": len(storm), "storm_refreshes": storm_fetches, "allowed": allowed,
                               "log": log.__dict__ | {"missing": len(log.missing)}})


async def scenario_two_instances(workdir: Path, scale: int = 1) -> Result:
    """Two instances on one PostgreSQL and Redis, one restarted under load: no failed request, one chain."""
    redis = RedisServer(workdir)
    redis.start()
    try:
        async with pg_database() as dsn:
            with fake_issuer() as idp:
                setup = Setup(workdir, idp, dsn, cache_url=redis.url, server={"drain_seconds": 0.5})
                a, b = BatonProcess(setup, "instance-a"), BatonProcess(setup, "instance-b")
                await a.astart()
                await b.astart()
                load = Load(idp, [a.url, b.url], concurrency=4, follow_readiness=True)
                try:
                    async with load.running():
                        await settle(0.5, load, at_least=10)
                        for _ in range(scale):
                            await b.astop()
                            await settle(0.5, load, at_least=5)
                            await b.astart()
                            await settle(0.5, load, at_least=5)
                finally:
                    await a.astop()
                    await b.astop()
            log = await check_log(dsn, setup.keys_path, load.outcomes)
    finally:
        redis.kill()
    failures = load.failures()
    served = {url: sum(1 for o in load.outcomes if o.instance == url and o.status == 200) for url in (a.url, b.url)}
    ok = not failures and all(served.values()) and log.ok
    return Result("two-instances", ok, {"requests": len(load.outcomes), "failures": [(o.status, o.error) for o in failures][:5],
                                        "served": list(served.values()), "log": log.__dict__ | {"missing": len(log.missing)}})


async def scenario_graceful(workdir: Path, scale: int = 1) -> Result:
    """SIGTERM with a request in flight: /readyz drops to 503 while still serving, then the listener
    closes, and the in-flight request still completes (within graceful_timeout)."""
    with fake_issuer() as idp:
        setup = Setup(workdir, idp, f"sqlite:///{workdir}/graceful.db",
                      server={"drain_seconds": 1.0, "read_timeout": 5.0, "graceful_timeout": 5.0})
        baton = BatonProcess(setup, "graceful")
        await baton.astart()
        body = urlencode({"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": Load(idp, []).token(),
                          "subject_token_type": TT_ACCESS_TOKEN, "audience": "orders"}).encode()
        auth = base64.b64encode(f"loader:{SECRET}".encode()).decode()
        try:
            in_flight = asyncio.create_task(_slow_request(baton.url, body, 2.0, auth))
            await asyncio.sleep(0.3)
            baton.terminate()
            await asyncio.sleep(0.3)
            async with httpx.AsyncClient(timeout=5) as http:
                ready = (await http.get(baton.url + "/readyz")).status_code
                health = (await http.get(baton.url + "/healthz")).status_code
                await asyncio.sleep(1.0)  # drain over: the listener is closed, the request still in flight
                try:
                    late = (await http.get(baton.url + "/healthz")).status_code
                except httpx.ConnectError:
                    late = 0
            status, response = await in_flight
            code = baton.wait()
        finally:
            await baton.astop()
        received = []
        if status == 200:
            token = json.loads(response)["access_token"]
            received = [Outcome(200, hashlib.sha256(token.encode()).hexdigest())]
        log = await check_log(setup.store_url, setup.keys_path, received)
    ok = ready == 503 and health == 200 and late == 0 and status == 200 and code == 0 and log.ok
    return Result("graceful", ok, {"readyz_while_draining": ready, "healthz_while_draining": health,
                                   "new_connection_after_drain": late, "in_flight_status": status,
                                   "exit_code": code, "log_ok": log.ok})


async def _slow_request(url: str, body: bytes, pause: float, basic: str) -> tuple[int, bytes]:
    """POST /token sending the body in two halves ``pause`` seconds apart; (status, response body)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (f"POST /token HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {basic}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    writer.write(head + body[: len(body) // 2])
    await writer.drain()
    await asyncio.sleep(pause)
    writer.write(body[len(body) // 2:])
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 15)
    writer.close()
    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0
    return status, raw.split(b"\r\n\r\n", 1)[-1]


async def _stalled_connection_closed(url: str, wait: float) -> float | None:
    """Send half a request line and stop: seconds until the server closed the connection (None: not within ``wait``)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Le")
    await writer.drain()
    started = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(), wait)
        return round(time.monotonic() - started, 2) if data == b"" or data.startswith(b"HTTP/1.1 408") else None
    except (TimeoutError, ConnectionError):
        return None
    finally:
        writer.close()


async def _huge_headers_status(url: str, size: int) -> int:
    """Status for a request whose headers exceed ``size`` bytes (0: connection closed without a response)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * size + b"\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    try:
        raw = await asyncio.wait_for(reader.read(), 10)
    except (TimeoutError, ConnectionError):
        raw = b""
    writer.close()
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0


async def scenario_slow_clients(workdir: Path, scale: int = 1) -> Result:
    """A client that stops sending is cut off (hypercorn closes it within read_timeout + keep_alive_timeout);
    oversized headers are refused before they reach the app; Baton keeps serving."""
    timeouts = {"read_timeout": 1.0, "keep_alive_timeout": 1.0}
    bound = sum(timeouts.values()) + 1.0
    with fake_issuer() as idp:
        setup = Setup(workdir, idp, f"sqlite:///{workdir}/slow.db", server=timeouts)
        baton = BatonProcess(setup, "slow-clients")
        await baton.astart()
        try:
            stalled = await asyncio.gather(*[_stalled_connection_closed(baton.url, bound * 2) for _ in range(5 * scale)])
            huge = await _huge_headers_status(baton.url, 64 * 1024)
            async with httpx.AsyncClient(timeout=5) as http:
                alive = (await http.get(baton.url + "/healthz")).status_code
        finally:
            await baton.astop()
    ok = all(s is not None and s <= bound for s in stalled) and huge in (0, 400, 413, 431) and alive == 200
    return Result("slow-clients", ok, {"cut_off_after_seconds": stalled, "bound": bound,
                                       "huge_headers_status": huge, "still_serving": alive})


SCENARIOS: dict[str, Callable[[Path, int], Any]] = {
    "pg-kill": scenario_pg_kill,
    "pg-outage": scenario_pg_outage,
    "redis-down": scenario_redis_down,
    "jwks": scenario_jwks,
    "two-instances": scenario_two_instances,
    "graceful": scenario_graceful,
    "slow-clients": scenario_slow_clients,
}


async def run_scenario(name: str, scale: int = 1, workdir: Path | None = None) -> Result:
    """Run one scenario in ``workdir`` (a temporary directory by default)."""
    if workdir is not None:
        return await SCENARIOS[name](workdir, scale)
    with tempfile.TemporaryDirectory(prefix=f"baton-faults-{name}-") as tmp:
        return await SCENARIOS[name](Path(tmp), scale)


def main(argv: list[str] | None = None) -> int:
    """``python -m ops.faults [NAME …] [--scale N]``: run scenarios, print one JSON line each; 1 if any failed."""
    parser = argparse.ArgumentParser(prog="ops.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"scenarios to run (default all): {', '.join(SCENARIOS)}")
    parser.add_argument("--scale", type=int, default=3, help="outage lengths and repetitions (default 3)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    failed = 0
    for name in args.names or list(SCENARIOS):
        result = asyncio.run(run_scenario(name, args.scale))
        print(json.dumps({"scenario": result.name, "ok": result.ok, **result.facts}, default=str), flush=True)
        failed += not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
