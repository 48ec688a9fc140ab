"""``baton bench``: exchanges per second, latency and cost per exchange, against a measured ceiling.

For each backend (embedded SQLite + memory; PostgreSQL + Redis when given) it
starts ``baton serve`` with a generated configuration, serves a trusted issuer
on loopback, pre-mints subject tokens for many users (and actor tokens, Baton
tokens two exchanges deep, client assertions), then for every scenario and
concurrency drives the server with wrk (or the built-in generator) and reads
server CPU from ``/proc``, database transactions and Redis round trips around
the run. The ceiling (:mod:`ops.bench_ceiling`) runs under the same hypercorn
settings in the same invocation, as a server of its own kept up for the whole
run and measured before the first scenario and after each one; every figure is
also given as a ratio to the mean of the two ceiling measurements either side of
its scenario.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from app.jose_strict import parse_compact
from app.types import CLIENT_ASSERTION_TYPE_JWT, GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN
from ops.bench_env import (
    ASSERTION_LIFETIME_S,
    BenchSetup,
    ServerProcess,
    baton_process,
    cpu_seconds,
    service_pids,
    wait_until_idle,
)
from ops.bench_load import Workload, run_load, wrk_available
from ops.bench_probe import (
    key_cache_hit_rate,
    metrics_batches,
    per_worker_delta,
    pg_analyze,
    pg_commits,
    pg_wal_bytes,
    redis_commands,
    redis_commandstats,
    sqlite_batches,
    worker_metrics,
)
from ops.config_files import free_port

SCENARIOS = ("impersonation", "delegation", "chain3", "private_key_jwt", "denial", "introspection")

@dataclass
class Options:
    """What to run (from the command line)."""

    concurrencies: list[int] = field(default_factory=lambda: [8, 32, 64])
    duration: float = 5.0
    warmup: float = 1.0
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    users: int = 2000
    chains: int = 300
    workers: int = 2
    worker_class: str = "uvloop"
    pg: str | None = None
    redis: str | None = None
    embedded: bool = True
    target: str | None = None
    workdir: Path | None = None
    generator: str = "auto"
    ceiling: bool = True
    log: Callable[[str], None] = print

    @property
    def load_generator(self) -> str:
        """``wrk`` when asked for or available, else ``builtin``."""
        if self.generator == "auto":
            return "wrk" if wrk_available() else "builtin"
        return self.generator


@dataclass
class Backend:
    """One store + cache combination under test."""

    name: str
    store_url: str
    cache_url: str
    pg_admin: str | None = None
    pg_database: str | None = None
    sqlite_path: Path | None = None


@dataclass
class Row:
    """One scenario at one concurrency, with its cost and its ratios to the ceiling."""

    backend: str
    scenario: str
    connections: int
    exchanges_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    errors: int
    statuses: dict[str, int]
    server_cpu_cores: float | None
    cpu_us_per_exchange: float | None
    worker_cpu_cores: list[float] | None
    db_tx_per_exchange: float | None
    db_tx_source: str | None
    redis_round_trips_per_exchange: float | None
    redis_commands_per_exchange: float | None
    generator: str
    key_cache_hit_rate: float | None = None
    #: CPU the database / Redis servers on this machine spent per exchange (None when not local)
    db_cpu_us_per_exchange: float | None = None
    redis_cpu_us_per_exchange: float | None = None
    #: PostgreSQL write-ahead log written per exchange (whole server), bytes
    db_wal_bytes_per_exchange: float | None = None
    ratio_to_ceiling: dict[str, float | None] = field(default_factory=dict)


# --------------------------------------------------------------------------- tokens and workloads


def _basic(client: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _exchange_body(subject: str, audience: str, **extra: str) -> str:
    form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": TT_ACCESS_TOKEN,
            "audience": audience, **extra}
    return urlencode(form)


@dataclass
class Tokens:
    """Pre-minted material: user and actor tokens, Baton tokens two deep, Baton tokens to introspect."""

    users: list[str]
    actors: list[str]
    bad: list[str]
    depth2: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    #: when the first of ``depth2`` and ``issued`` expires (Unix seconds; 0 before they are issued)
    baton_tokens_expire: float = 0.0


#: how long the pre-minted subject and actor tokens live: longer than any bench run, within Baton's default
#: ``tokens.max_subject_lifetime`` (a day); Baton caps what it issues at ``tokens.ttl`` anyway
SUBJECT_TOKEN_LIFETIME = 12 * 3600
#: what a measurement adds to its warm-up and duration: starting the load generator, reading CPU, waiting
#: for PostgreSQL's commit counter to settle (up to 12 s), a margin for a slow VM
MEASUREMENT_OVERHEAD_S = 60.0


def mint_tokens(setup: BenchSetup, users: int, lifetime: int = SUBJECT_TOKEN_LIFETIME) -> Tokens:
    """Subject tokens for ``users`` distinct users, 16 actor tokens, and tampered tokens for denials."""
    now = int(time.time())
    issuer = setup.issuer
    user_tokens = [issuer.mint(issuer.claims(f"user-{i:06d}", now, lifetime)) for i in range(users)]
    actors = [issuer.mint(issuer.claims(f"svc-actor-{i}", now, lifetime)) for i in range(16)]
    bad = []
    for token in user_tokens[: max(1, users // 4)]:
        head, payload, signature = token.split(".")
        flipped = ("A" if signature[5] != "A" else "B")
        bad.append(f"{head}.{payload}.{signature[:5]}{flipped}{signature[6:]}")
    return Tokens(users=user_tokens, actors=actors, bad=bad)


async def _exchange_all(url: str, headers: dict[str, str], bodies: list[str]) -> list[str]:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        slots = asyncio.Semaphore(16)

        async def one(body: str) -> str:
            async with slots:
                response = await http.post("/token", content=body, headers={
                    **headers, "Content-Type": "application/x-www-form-urlencoded"})
            if response.status_code != 200:
                raise RuntimeError(f"setup exchange failed: {response.status_code} {response.text[:200]}")
            return str(response.json()["access_token"])

        return list(await asyncio.gather(*(one(b) for b in bodies)))


def issue_baton_tokens(url: str, setup: BenchSetup, tokens: Tokens, chains: int) -> None:
    """Through the server under test: tokens two exchanges deep (a → b → c), and tokens to introspect."""
    secret = setup.secret
    users = tokens.users[:chains]
    depth1 = asyncio.run(_exchange_all(url, _basic("chain-a", secret), [_exchange_body(u, "svc-b") for u in users]))
    tokens.depth2 = asyncio.run(
        _exchange_all(url, _basic("svc-b", secret), [_exchange_body(t, "svc-c") for t in depth1]))
    tokens.issued = asyncio.run(_exchange_all(url, _basic("imp", secret), [_exchange_body(u, "orders") for u in users]))
    tokens.baton_tokens_expire = min(_expiry(t) for t in (tokens.depth2[:1] + tokens.issued[:1]))


def _expiry(token: str) -> float:
    """The ``exp`` of a token Baton issued (read, not verified: the bench only plans with it)."""
    return float(parse_compact(token).claims["exp"])


def measurement_span(options: Options) -> float:
    """Seconds one measurement may take, warm-up included: the tokens it presents must outlive it."""
    return options.warmup + options.duration + MEASUREMENT_OVERHEAD_S


#: what every successful exchange's response holds (the ceiling's too)
ISSUED = '"access_token":"'


def workload(scenario: str, setup: BenchSetup, tokens: Tokens, assertions: int) -> Workload:
    """The requests of one scenario."""
    secret = setup.secret
    if scenario == "impersonation":
        return Workload("/token", _basic("imp", secret), [_exchange_body(u, "orders") for u in tokens.users],
                        expected_body=ISSUED)
    if scenario == "delegation":
        bodies = [_exchange_body(u, "orders", actor_token=tokens.actors[i % len(tokens.actors)],
                                 actor_token_type=TT_ACCESS_TOKEN) for i, u in enumerate(tokens.users)]
        return Workload("/token", _basic("dlg", secret), bodies, expected_body=ISSUED)
    if scenario == "chain3":
        return Workload("/token", _basic("svc-c", secret), [_exchange_body(t, "svc-d") for t in tokens.depth2],
                        expected_body=ISSUED)
    if scenario == "private_key_jwt":
        now = int(time.time())
        bodies = [
            _exchange_body(tokens.users[i % len(tokens.users)], "orders", client_assertion_type=CLIENT_ASSERTION_TYPE_JWT,
                           client_assertion=setup.assertion(now))
            for i in range(assertions)
        ]
        return Workload("/token", {}, bodies, single_use=True, expected_body=ISSUED)
    if scenario == "denial":
        return Workload("/token", _basic("imp", secret), [_exchange_body(b, "orders") for b in tokens.bad], 400,
                        expected_body='"error":"invalid_request"')
    if scenario == "introspection":
        return Workload("/introspect", _basic("imp", secret), [urlencode({"token": t}) for t in tokens.issued],
                        expected_body='"active":true')
    raise ValueError(f"unknown scenario {scenario!r}")


# --------------------------------------------------------------------------- measuring one run


@dataclass
class Snapshot:
    """Counters read before or after a run."""

    cpu: dict[int, float]
    db: int | None
    sqlite_head: int = 0
    redis: dict[str, int] | None = None
    workers: dict[int, str] | None = None  # /metrics text by worker process id
    services: dict[str, dict[int, float]] = field(default_factory=dict)  # local db/cache server CPU by pid
    wal: int | None = None  # PostgreSQL WAL position, bytes


def _snapshot(server: ServerProcess | None, backend: Backend | None, url: str, sqlite_head: int) -> Snapshot:
    # CPU first, before the probes below spend seconds waiting for counters to settle
    cpu = cpu_seconds(server.pids()) if server is not None else {}
    services = _service_cpu(backend)
    db: int | None = None
    wal: int | None = None
    head = sqlite_head
    if backend is not None and backend.pg_admin and backend.pg_database:
        db = pg_commits(backend.pg_admin, backend.pg_database)
        wal = pg_wal_bytes(backend.pg_admin)
    elif backend is not None and backend.sqlite_path is not None:
        db, head = sqlite_batches(backend.sqlite_path, sqlite_head)
    elif backend is not None:
        db = metrics_batches(url)
    redis = redis_commandstats(backend.cache_url) if backend is not None and backend.cache_url.startswith("redis") else None
    workers = worker_metrics(url) if backend is not None else None
    return Snapshot(cpu, db, head, redis, workers, services, wal)


def _service_cpu(backend: Backend | None) -> dict[str, dict[int, float]]:
    """CPU seconds so far of the PostgreSQL and Redis servers of ``backend`` that run on this machine."""
    if backend is None or backend.pg_database is None:
        return {}
    found: dict[str, dict[int, float]] = {}
    if _is_local(backend.store_url):
        found["db"] = cpu_seconds(service_pids("postgres"))
    if backend.cache_url.startswith("redis") and _is_local(backend.cache_url):
        port = urlsplit(backend.cache_url).port or 6379
        found["redis"] = cpu_seconds(service_pids("redis-server", f":{port}"))
    return found


def _is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _service_us(before: Snapshot, after: Snapshot, name: str, answered: int) -> float | None:
    if name not in before.services or name not in after.services or not after.services[name]:
        return None
    spent = sum(t - before.services[name].get(pid, 0.0) for pid, t in after.services[name].items())
    return round(spent / answered * 1e6, 1)


def measure(name: str, scenario: str, url: str, work: Workload, connections: int, options: Options,
            server: ServerProcess | None, backend: Backend | None) -> Row:
    """Run one load and turn counters into per-exchange figures."""
    head0 = sqlite_batches(backend.sqlite_path, 0)[1] if backend is not None and backend.sqlite_path else 0
    before = _snapshot(server, backend, url, head0)
    result = run_load(url, work, connections, options.duration, options.load_generator)
    after = _snapshot(server, backend, url, head0)
    answered = max(result.requests, 1)
    cpu_total = None
    per_worker = None
    if after.cpu:
        deltas = {pid: after.cpu[pid] - before.cpu.get(pid, 0.0) for pid in after.cpu}
        cpu_total = sum(deltas.values())
        per_worker = [round(d / result.duration, 2) for d in deltas.values() if d > 0.01]
    db_tx = None
    source = None
    if backend is not None and after.db is not None:
        if backend.sqlite_path is not None:
            db_tx, source = after.db / answered, "sqlite batches (distinct batch times)"
        elif before.db is not None:
            db_tx = (after.db - before.db) / answered
            source = "pg_stat_database.xact_commit" if backend.pg_admin else "/metrics baton_store_batch_size_count"
    redis_rt = redis_cmds = None
    if before.redis is not None and after.redis is not None:
        redis_cmds = redis_commands(before.redis, after.redis) / answered
        if before.workers and after.workers:
            served = per_worker_delta(before.workers, after.workers, "baton_request_duration_seconds_count",
                                      f'endpoint="{work.path}"')
            calls = per_worker_delta(before.workers, after.workers, "baton_redis_calls_total")
            redis_rt = calls / served if served > 0 else None
    hit_rate = key_cache_hit_rate(before.workers, after.workers) if before.workers and after.workers else None
    return Row(
        key_cache_hit_rate=hit_rate,
        backend=name, scenario=scenario, connections=connections, exchanges_per_s=round(result.rate, 1),
        p50_ms=round(result.p50_ms, 2), p95_ms=round(result.p95_ms, 2), p99_ms=round(result.p99_ms, 2),
        requests=result.requests, errors=result.errors, statuses=result.statuses,
        server_cpu_cores=None if cpu_total is None else round(cpu_total / result.duration, 2),
        cpu_us_per_exchange=None if cpu_total is None else round(cpu_total / answered * 1e6, 1),
        worker_cpu_cores=per_worker,
        db_tx_per_exchange=None if db_tx is None else round(db_tx, 3), db_tx_source=source,
        redis_round_trips_per_exchange=None if redis_rt is None else round(redis_rt, 3),
        redis_commands_per_exchange=None if redis_cmds is None else round(redis_cmds, 3),
        generator=result.generator,
        db_cpu_us_per_exchange=_service_us(before, after, "db", answered),
        redis_cpu_us_per_exchange=_service_us(before, after, "redis", answered),
        db_wal_bytes_per_exchange=None if before.wal is None or after.wal is None
        else round((after.wal - before.wal) / answered),
    )


# --------------------------------------------------------------------------- backends and servers


@contextlib.contextmanager
def pg_database(admin: str) -> Iterator[tuple[str, str]]:
    """A throwaway database on the server of ``admin`` (its statistics are Baton's alone); dropped after."""
    import asyncpg

    name = f"baton_bench_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    base, _, _ = admin.partition("?")[0].rpartition("/")
    try:
        yield f"{base}/{name}", name
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def backends(options: Options, workdir: Path) -> Iterator[list[Backend]]:
    """The backends to measure, created for this run and removed afterwards."""
    found: list[Backend] = []
    with contextlib.ExitStack() as stack:
        if options.embedded:
            path = workdir / "events.db"
            found.append(Backend("embedded", f"sqlite:///{path}", "memory://", sqlite_path=path))
        if options.pg and options.redis:
            url, name = stack.enter_context(pg_database(options.pg))
            found.append(Backend("postgres+redis", url, options.redis, pg_admin=options.pg, pg_database=name))
        yield found


def _server_config(setup: BenchSetup, options: Options, backend: Backend, port: int) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    config = setup.config(port=port, store_url=backend.store_url, cache_url=backend.cache_url,
                          workers=options.workers, worker_class=options.worker_class, prefix=prefix)
    # the bench's ttl (the production default) unless a measurement lasts longer: its tokens must outlive one
    ttl = max(config["tokens"]["ttl"], int(measurement_span(options)) + 60)
    return {**config, "tokens": {**config["tokens"], "ttl": ttl}}


def ceiling_process(config_path: Path, url: str) -> ServerProcess:
    """The ceiling app under the ``[server]`` settings of ``config_path``."""
    import sys

    argv = [sys.executable, "-m", "ops.bench_ceiling", "--config", str(config_path)]
    return ServerProcess(argv, url, config_path.with_suffix(".log"), "/readyz")


def _assertions_needed(options: Options) -> int:
    # generous: more than the fastest run could use, so single-use assertions never run out
    return int(max(options.concurrencies) * 0 + 9000 * (options.duration + 1)) + 2000


#: scenarios that present tokens Baton issued: those live ``tokens.ttl`` (300 s in the bench's config), so they are
#: issued anew just before each such scenario, and again before a measurement they would not outlive; issued once
#: per backend, a long run reached its later scenarios with them expired (seen: chain3 at 64 connections answered
#: nothing but 400s)
USES_BATON_TOKENS = frozenset({"chain3", "introspection"})


def _refresh_baton_tokens(url: str, setup: BenchSetup, tokens: Tokens, options: Options, *, always: bool) -> bool:
    """Issue the Baton tokens anew when ``always`` or when they would expire within one measurement; True if issued."""
    span = measurement_span(options)
    if not always and tokens.baton_tokens_expire - time.time() >= span:
        return False
    issue_baton_tokens(url, setup, tokens, options.chains)
    if always and tokens.baton_tokens_expire - time.time() < span:  # a --target whose ttl is shorter (said once)
        options.log(f"  warning: the server's tokens expire within {span:.0f} s, before a measurement ends; "
                    "chain3 and introspection will count expired tokens (raise its tokens.ttl or shorten --duration)")
    return True


def _run_scenarios(name: str, url: str, setup: BenchSetup, tokens: Tokens, options: Options,
                   server: ServerProcess | None, backend: Backend | None,
                   bracket: Callable[[list[Row]], None]) -> list[Row]:
    """Every scenario at every concurrency; ``bracket`` gets each scenario's rows as soon as they are measured."""
    rows: list[Row] = []
    for scenario in options.scenarios:
        if scenario in USES_BATON_TOKENS:
            _refresh_baton_tokens(url, setup, tokens, options, always=True)
        if scenario == "private_key_jwt" and options.duration > ASSERTION_LIFETIME_S - 20:
            options.log(f"  warning: client assertions live {ASSERTION_LIFETIME_S} s at most (Baton refuses longer); "
                        f"a {options.duration:.0f} s run counts those that expire during it as errors")
        work = workload(scenario, setup, tokens, _assertions_needed(options) if scenario == "private_key_jwt" else 0)
        if options.warmup > 0 and not work.single_use:
            run_load(url, work, max(options.concurrencies), options.warmup, options.load_generator)
        if backend is not None and backend.pg_database:
            pg_analyze(backend.store_url)  # statistics, as in a database in service (before the counters are read)
        measured: list[Row] = []
        for connections in options.concurrencies:
            if work.single_use:  # fresh assertions for every run
                work = workload(scenario, setup, tokens, _assertions_needed(options))
            elif scenario in USES_BATON_TOKENS and _refresh_baton_tokens(url, setup, tokens, options, always=False):
                work = workload(scenario, setup, tokens, 0)
                if server is not None:  # the audit runner's share of the exchanges just made stays out of the run
                    wait_until_idle(server.pids())
            row = measure(name, scenario, url, work, connections, options, server, backend)
            options.log(f"  {name:15} {scenario:16} c={connections:<4} {row.exchanges_per_s:>9.1f}/s "
                        f"p99 {row.p99_ms:7.2f} ms  errors {row.errors}")
            measured.append(row)
        bracket(measured)
        rows += measured
    return rows


class Ceiling:
    """The bare verify+sign server, up for the whole run, measured between scenarios.

    Each measurement is appended to :attr:`runs`; :meth:`bracket` measures it again
    and gives the rows of the scenario just run their ratios to the mean of the
    measurements either side of them.
    """

    def __init__(self, setup: BenchSetup, tokens: Tokens, options: Options, config: dict[str, Any]) -> None:
        port = free_port()
        path = setup.write_config({**config, "server": {**config["server"], "port": port}}, "ceiling.toml")
        self.server = ceiling_process(path, f"http://127.0.0.1:{port}")
        self.options = options
        self.work = workload("impersonation", setup, tokens, 0)
        self.runs: list[dict[int, Row]] = []
        #: the Baton server up meanwhile: each measurement waits until its background work has settled
        self.beside: ServerProcess | None = None

    def measure(self) -> None:
        """One measurement at every concurrency, once the Baton server beside it is idle, after a warm-up."""
        options = self.options
        if self.beside is not None:  # e.g. the audit runner catching up with the scenario just run
            wait_until_idle(self.beside.pids())
        if options.warmup > 0:
            run_load(self.server.url, self.work, max(options.concurrencies), options.warmup, options.load_generator)
        result: dict[int, Row] = {}
        for connections in options.concurrencies:
            row = measure("ceiling", "ceiling", self.server.url, self.work, connections, options, self.server, None)
            options.log(f"  {'ceiling':15} {'verify+sign':16} c={connections:<4} {row.exchanges_per_s:>9.1f}/s "
                        f"p99 {row.p99_ms:7.2f} ms  errors {row.errors}")
            result[connections] = row
        self.runs.append(result)

    def bracket(self, rows: list[Row]) -> None:
        """Measure again, then set ``rows``' ratios to the mean of this measurement and the one before."""
        self.measure()
        _ratios(rows, _mean_ceiling(self.runs[-2:]))


def _mean_ceiling(runs: list[dict[int, Row]]) -> dict[int, Row]:
    """The ceiling per concurrency over several measurements: rates, latencies and CPU averaged, counts summed."""
    merged: dict[int, Row] = {}
    for connections in sorted({c for run in runs for c in run}):
        rows = [run[connections] for run in runs if connections in run]

        def mean(name: str, rows: list[Row] = rows) -> float | None:
            values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
            return sum(values) / len(values) if values else None

        statuses: dict[str, int] = {}
        for r in rows:
            for status, count in r.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        merged[connections] = dataclasses.replace(
            rows[0],
            exchanges_per_s=mean("exchanges_per_s") or 0.0, p50_ms=mean("p50_ms") or 0.0,
            p95_ms=mean("p95_ms") or 0.0, p99_ms=mean("p99_ms") or 0.0, server_cpu_cores=mean("server_cpu_cores"),
            cpu_us_per_exchange=mean("cpu_us_per_exchange"),
            requests=sum(r.requests for r in rows), errors=sum(r.errors for r in rows), statuses=statuses,
        )
    return merged


def _ratios(rows: list[Row], ceiling: dict[int, Row]) -> None:
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    for row in rows:
        top = ceiling.get(row.connections)
        if top is None:
            continue
        row.ratio_to_ceiling = {
            "exchanges_per_s": ratio(row.exchanges_per_s, top.exchanges_per_s),
            "p50_ms": ratio(row.p50_ms, top.p50_ms),
            "p99_ms": ratio(row.p99_ms, top.p99_ms),
            "cpu_us_per_exchange": ratio(row.cpu_us_per_exchange, top.cpu_us_per_exchange),
        }


def machine() -> dict[str, Any]:
    """The machine the numbers come from."""
    model = ""
    with contextlib.suppress(OSError):
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), "")
    memory = ""
    with contextlib.suppress(OSError, StopIteration):
        memory = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal"))
    return {"cpu": model, "cores": os.cpu_count(), "memory": memory, "kernel": platform.release(),
            "python": platform.python_version()}


def run(options: Options) -> dict[str, Any]:
    """Run the benchmark; the JSON-able report."""
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        workdir = options.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="baton-bench-")))
        setup = BenchSetup.load(workdir) if options.target else BenchSetup.create(workdir)
        stack.enter_context(setup.issuer.serving())
        tokens = mint_tokens(setup, options.users)
        rows: list[Row] = []
        # the ceiling is measured before the first scenario and after each one; a scenario's ratios are to the
        # mean of the measurements either side of it, so a VM that speeds up or slows down during the run (seen:
        # twice as fast within a minute) does not skew them
        ceiling = None
        if options.ceiling:
            ceiling = Ceiling(setup, tokens, options, setup.config(
                port=0, store_url="sqlite:///unused", cache_url="memory://",
                workers=options.workers, worker_class=options.worker_class,
            ))
            stack.callback(ceiling.server.stop)  # first: a stop during the start must stop it too
            ceiling.server.start()
            ceiling.measure()
        bracket = ceiling.bracket if ceiling is not None else (lambda rows: None)
        if options.target:
            options.log(f"target {options.target}")
            rows += _run_scenarios("target", options.target, setup, tokens, options, None, None, bracket)
        else:
            for backend in stack.enter_context(backends(options, workdir)):
                port = free_port()
                config = _server_config(setup, options, backend, port)
                path = setup.write_config(config, f"baton-{backend.name.replace('+', '-')}.toml")
                server = baton_process(path, f"http://127.0.0.1:{port}")
                options.log(f"{backend.name}: baton serve on {server.url} (workers={options.workers}, "
                            f"{options.worker_class}), load generator {options.load_generator}")
                try:
                    server.start()
                    if ceiling is not None:
                        ceiling.beside = server
                    rows += _run_scenarios(backend.name, server.url, setup, tokens, options, server, backend, bracket)
                finally:
                    if ceiling is not None:
                        ceiling.beside = None
                    server.stop()
        ceilings = ceiling.runs if ceiling is not None else []
        mean_ceiling = _mean_ceiling(ceilings)
    return {
        "machine": machine(),
        "settings": {
            "workers": options.workers, "worker_class": options.worker_class, "keep_alive_timeout": 75.0,
            "duration_s": options.duration, "concurrencies": options.concurrencies, "users": options.users,
            "generator": options.load_generator, "target": options.target,
        },
        "ceiling": {str(c): asdict(r) for c, r in mean_ceiling.items()},
        # every ceiling measurement in order (before the first scenario, then after each): the VM's drift
        "ceiling_runs": [{str(c): r.exchanges_per_s for c, r in run.items()} for run in ceilings],
        "results": [asdict(r) for r in rows],
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(report: dict[str, Any]) -> str:
    """The report as a text table."""
    head = (f"{'backend':15} {'scenario':16} {'conns':>5} {'exch/s':>9} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
            f"{'errors':>6} {'cpu':>5} {'µs/exch':>8} {'db µs':>6} {'db tx':>6} {'wal B':>6} {'redis':>6} {'keyhit':>6} {'×ceil':>6}")
    lines = [head, "-" * len(head)]
    ceiling = [dict(r, backend="ceiling", scenario="verify+sign only") for r in report["ceiling"].values()]
    for r in [*report["results"], *ceiling]:
        ratio = (r.get("ratio_to_ceiling") or {}).get("exchanges_per_s")
        lines.append(
            f"{r['backend']:15} {r['scenario']:16} {r['connections']:>5} {r['exchanges_per_s']:>9.1f} "
            f"{r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['errors']:>6} "
            f"{_fmt(r['server_cpu_cores'], '.2f'):>5} {_fmt(r['cpu_us_per_exchange'], '.0f'):>8} "
            f"{_fmt(r.get('db_cpu_us_per_exchange'), '.0f'):>6} "
            f"{_fmt(r['db_tx_per_exchange'], '.3f'):>6} {_fmt(r.get('db_wal_bytes_per_exchange'), '.0f'):>6} "
            f"{_fmt(r['redis_round_trips_per_exchange'], '.2f'):>6} "
            f"{_fmt(r.get('key_cache_hit_rate'), '.1%'):>6} {_fmt(ratio, '.2f'):>6}"
        )
    runs = report.get("ceiling_runs") or []
    if len(runs) > 1:
        for connections in report["ceiling"]:
            rates = ", ".join(f"{run[connections]:.0f}" for run in runs if connections in run)
            lines.append(f"ceiling at c={connections}, before the first scenario and after each: {rates} /s")
    m = report["machine"]
    lines.append(f"machine: {m['cpu']} ×{m['cores']}, {m['memory']}, Python {m['python']}; "
                 f"generator {report['settings']['generator']}; {report['elapsed_s']} s")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | Path) -> None:
    """Write the report as indented JSON."""
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
