"""``baton bench-audit``: replay speed of the audit projection and the p95 of each audit query.

Synthetic events (delegation chains, refusals, revocations) are appended in
bulk straight to the store (thousands per transaction, through the real
append path so the hash chain is valid), then the audit views are rebuilt
from position 0 (events/s) and each query of the audit API is timed on
random parameters drawn from the data (p50 / p95 / max in milliseconds).

``--pg URL`` runs on PostgreSQL in a throwaway schema (default 1,000,000
events); ``--quick`` runs on a temporary SQLite file (20,000 events).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from eventstore import (
    ClientAuthFailed,
    Event,
    EventStore,
    ExchangeDenied,
    SubjectRevoked,
    TokenExchanged,
    TokenRevoked,
    open_store,
)
from projections import audit_queries as q
from projections.audit import AuditProjection
from projections.runner import rebuild

ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
REASONS = ("depth_exceeded", "revoked", "invalid_scope", "audience_not_allowed", "subject_token_expired")
T0 = 1_790_000_000.0


class Data(msgspec.Struct):
    """What the generator made, to draw query parameters from."""

    subjects: list[str]
    clients: list[str]
    audiences: list[str]
    actors: list[str]
    jtis: list[str]
    start: float
    end: float


def generate(n: int, seed: int = 7) -> tuple[list[Event], Data]:
    """``n`` synthetic events: 70 % exchanges (60 % of them continue a recent chain), 20 % refusals,
    5 % failed client authentications, 4 % token and 1 % subject revocations."""
    rng = random.Random(seed)
    subjects = [f"user-{i}" for i in range(max(10, n // 100))]
    clients = [f"client-{i}" for i in range(50)]
    audiences = [f"https://api-{i}.example" for i in range(20)]
    actors = [f"svc-{i}" for i in range(100)]
    scopes = ["read", "write", "admin", "orders", "billing"]
    recent: list[TokenExchanged] = []
    jtis: list[str] = []
    events: list[Event] = []
    for i in range(n):
        at = T0 + i * 0.05
        roll = rng.random()
        if roll < 0.70:
            parent = rng.choice(recent) if recent and rng.random() < 0.6 else None
            if parent is not None and parent.depth >= 4:
                parent = None
            actor = rng.choice(actors)
            act = {"sub": actor, **({"act": parent.act} if parent and parent.act else {})} if parent else None
            jti = f"j{i}"
            event: Event = TokenExchanged(
                at=at, request_id=f"r{i}", client_id=actor if parent else rng.choice(clients), kind="delegation",
                subject_iss="https://idp.example", subject_sub=parent.subject_sub if parent else rng.choice(subjects),
                subject_jti=parent.issued_jti if parent else f"x{i}", subject_token_type=ACCESS_TOKEN,
                actor_sub=actor if parent else None, act=act, parent_jti=parent.issued_jti if parent else None,
                root_jti=parent.root_jti if parent else jti, depth=parent.depth + 1 if parent else 1,
                audience=[rng.choice(audiences)], scope=rng.sample(scopes, 2), issued_jti=jti,
                issued_token_type=ACCESS_TOKEN, issued_at=int(at), expires_at=int(at) + 300,
                token_sha256="0" * 64, kid="bench",
            )  # fmt: skip
            recent.append(event)
            if len(recent) > 2000:
                recent.pop(0)
            jtis.append(jti)
        elif roll < 0.90:
            event = ExchangeDenied(
                at=at, request_id=f"r{i}", client_id=rng.choice(clients), error="invalid_request",
                reason=rng.choice(REASONS), description="refused", subject_iss="https://idp.example",
                subject_sub=rng.choice(subjects), audience=[rng.choice(audiences)],
            )  # fmt: skip
        elif roll < 0.95:
            event = ClientAuthFailed(
                at=at, request_id=f"r{i}", endpoint="token", client_id=rng.choice(clients), reason="bad_secret"
            )
        elif roll < 0.99 and jtis:
            event = TokenRevoked(at=at, jti=rng.choice(jtis[-5000:]), by="bench", reason="bench")
        else:
            event = SubjectRevoked(
                at=at, iss="https://idp.example", sub=rng.choice(subjects), before=at, by="bench", reason="bench"
            )
        events.append(event)
    data = Data(subjects, clients, audiences, actors, jtis, T0, T0 + n * 0.05)
    return events, data


async def load(store: EventStore, events: list[Event], chunk: int = 5000) -> float:
    """Append ``events`` in chunks (one transaction each); seconds taken."""
    started = time.perf_counter()
    for i in range(0, len(events), chunk):
        await store.append(f"bench-{i // chunk}", events[i : i + chunk])
    return time.perf_counter() - started


def query_suite(data: Data, rng: random.Random) -> dict[str, Callable[[EventStore], Awaitable[Any]]]:
    """One closure per audit query, drawing fresh parameters at each call."""
    iss = "https://idp.example"

    def window() -> dict[str, float]:
        since = rng.uniform(data.start, data.end - 3600)
        return {"since": since, "until": since + 3600}

    return {
        "exchanges by subject": lambda s: q.exchanges(s, subject_iss=iss, subject_sub=rng.choice(data.subjects)),
        "exchanges by actor": lambda s: q.exchanges(s, actor_sub=rng.choice(data.actors)),
        "exchanges by client": lambda s: q.exchanges(s, client_id=rng.choice(data.clients)),
        "exchanges by audience": lambda s: q.exchanges(s, audience=rng.choice(data.audiences)),
        "exchanges by time (1 h)": lambda s: q.exchanges(s, **window()),
        "exchanges, deep page": lambda s: q.exchanges(s, after=rng.randrange(len(data.jtis))),
        "denied by subject": lambda s: q.denied(s, subject_iss=iss, subject_sub=rng.choice(data.subjects)),
        "denied by reason": lambda s: q.denied(s, reason=rng.choice(REASONS)),
        "revocations by time (1 h)": lambda s: q.revocations(s, **window()),
        "subject summary": lambda s: q.subject_summary(s, iss, rng.choice(data.subjects)),
        "token tree": lambda s: q.token_tree(s, rng.choice(data.jtis)),
    }


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


async def bench(store: EventStore, n: int, samples: int, out: Callable[[str], None]) -> dict[str, Any]:
    """Generate, load, replay and query; the results as a dict."""
    out(f"generating {n:,} events …")
    events, data = generate(n)
    seconds = await load(store, events)
    out(f"appended {n:,} events in {seconds:.1f} s ({n / seconds:,.0f}/s)")
    report = await rebuild(store, AuditProjection(), 0, batch_size=5000)
    out(f"replay: {report.events:,} events in {report.elapsed:.1f} s ({report.events_per_second:,.0f} events/s)")
    if store.dialect == "postgresql":  # fresh bulk-loaded tables: give the planner the statistics autovacuum would
        await store.fetch("ANALYZE")
    rng = random.Random(11)
    results: dict[str, Any] = {"events": n, "replay_events_per_second": report.events_per_second, "queries": {}}
    for name, run in query_suite(data, rng).items():
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            await run(store)
            times.append((time.perf_counter() - started) * 1000)
        results["queries"][name] = {
            "p50_ms": statistics.median(times),
            "p95_ms": _percentile(times, 0.95),
            "max_ms": max(times),
        }
    return results


def format_results(results: dict[str, Any]) -> str:
    """The results as a Markdown table (ready for the README)."""
    lines = [
        f"events: {results['events']:,}; replay: {results['replay_events_per_second']:,.0f} events/s",
        "",
        "| query | p50 ms | p95 ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results["queries"].items():
        lines.append(f"| {name} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['max_ms']:.2f} |")
    return "\n".join(lines) + "\n"


async def _pg_schema(url: str, schema: str, create: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"' if create else f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark described by ``args`` on a throwaway store."""
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    if args.pg:
        n = args.events or 1_000_000
        schema = f"bench_audit_{uuid.uuid4().hex[:8]}"
        await _pg_schema(args.pg, schema, True)
        url = f"{args.pg}{'&' if '?' in args.pg else '?'}search_path={schema}"
        try:
            store = open_store(url, max_batch=4)
            await store.open()
            try:
                return await bench(store, n, args.samples, log)
            finally:
                await store.close()
        finally:
            if not args.keep:
                await _pg_schema(args.pg, schema, False)
    n = args.events or 20_000
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        await store.open()
        try:
            return await bench(store, n, args.samples, log)
        finally:
            await store.close()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``baton bench-audit``."""
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--pg", metavar="URL", help="PostgreSQL server (a throwaway schema is created and dropped)")
    where.add_argument("--quick", action="store_true", help="SQLite in a temporary file, 20,000 events")
    p.add_argument("--events", type=int, metavar="N", help="number of events (default 1,000,000 / 20,000)")
    p.add_argument("--samples", type=int, default=200, help="timed runs per query (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema afterwards")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``baton bench-audit``."""
    results = asyncio.run(run(args))
    print(msgspec.json.encode(results).decode() if args.json else format_results(results))
    return 0
