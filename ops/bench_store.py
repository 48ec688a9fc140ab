"""``baton bench-store``: PostgreSQL appends/s with and without group commit, and the chain's cost.

Each scenario gets a fresh schema and runs ``concurrency`` tasks appending one
~0.8 KB ``TokenExchanged`` event each, in a loop, for a fixed time. "Without
group commit" is the same store with ``max_batch=1``: one transaction (and one
lock) per append. "Chain off" replaces the envelope encoding and SHA-256 of
the chain with constants — the head read and the lock stay, because positions
need them anyway — so the ratio is what the chain itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import asyncpg
import msgspec

import eventstore.batch as batch_module
from eventstore import TokenExchanged
from eventstore.postgres import PostgresEventStore

CONCURRENCY = (1, 8, 64)


@dataclass
class Result:
    """One scenario's outcome."""

    name: str
    concurrency: int
    group_commit: bool
    chain: bool
    appends: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.appends / self.seconds


def sample_event(i: int) -> TokenExchanged:
    """A realistic exchange event (about 0.8 KB encoded)."""
    return TokenExchanged(
        at=time.time(),
        request_id=uuid.uuid4().hex,
        client_id="orders-service",
        kind="delegation",
        subject_iss="https://idp.example.com",
        subject_sub=f"user-{i % 1000}",
        subject_jti=uuid.uuid4().hex,
        subject_token_type="urn:ietf:params:oauth:token-type:access_token",
        actor_iss="https://baton.example.com",
        actor_sub="orders-service",
        act={"sub": "orders-service", "iss": "https://baton.example.com"},
        root_jti=uuid.uuid4().hex,
        depth=1,
        audience=["https://payments.example.com"],
        scope=["payments:read", "payments:write"],
        issued_jti=uuid.uuid4().hex,
        issued_token_type="urn:ietf:params:oauth:token-type:access_token",
        issued_at=int(time.time()),
        expires_at=int(time.time()) + 300,
        token_sha256="a" * 64,
        kid="bench-key",
        source_address="10.0.0.1",
    )


@contextmanager
def chain_disabled() -> Iterator[None]:
    """Benchmark only: replace the chain's encoding and hashing with constants."""
    saved = batch_module.chain_hash, batch_module.record_bytes
    batch_module.chain_hash = lambda prev, position, record: b"\x00" * 32  # type: ignore[assignment]
    batch_module.record_bytes = lambda *args: b""  # type: ignore[assignment]
    try:
        yield
    finally:
        batch_module.chain_hash, batch_module.record_bytes = saved


def _dsn(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


async def scenario(url: str, concurrency: int, group: bool, chain: bool, seconds: float) -> Result:
    """Run one scenario in a throwaway schema."""
    schema = f"baton_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url, timeout=10)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    store = PostgresEventStore(
        _dsn(url, schema), max_batch=256 if group else 1, pool_max=4, application_name="baton-bench"
    )
    latencies: list[float] = []
    try:
        await store.open()
        events = [sample_event(i) for i in range(256)]
        deadline = 0.0

        async def worker(w: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await store.append(f"bench-{w}-{n}", [events[n % 256]])
                latencies.append(time.perf_counter() - started)
                n += 1

        with chain_disabled() if not chain else _nothing():
            deadline = time.perf_counter() + min(0.5, seconds / 4)  # warm-up: pool, prepared statements
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
            latencies.clear()
            started = time.perf_counter()
            deadline = started + seconds
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
            elapsed = time.perf_counter() - started
    finally:
        await store.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()
    latencies.sort()
    name = f"c={concurrency} {'group' if group else 'single'}{'' if chain else ' chain-off'}"
    return Result(
        name=name,
        concurrency=concurrency,
        group_commit=group,
        chain=chain,
        appends=len(latencies),
        seconds=elapsed,
        p50_ms=statistics.median(latencies) * 1000 if latencies else 0.0,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
    )


@contextmanager
def _nothing() -> Iterator[None]:
    yield


async def run(url: str, seconds: float) -> list[Result]:
    """Every scenario, in a fixed order."""
    results = []
    for group in (True, False):
        for c in CONCURRENCY:
            results.append(await scenario(url, c, group, True, seconds))
    for c in (1, 64):
        results.append(await scenario(url, c, True, False, seconds))
    return results


def ratios(results: list[Result]) -> dict[str, float]:
    """Group commit speed-up per concurrency, and chain-on / chain-off throughput."""
    by = {(r.concurrency, r.group_commit, r.chain): r.rate for r in results}
    out = {f"group_vs_single_c{c}": by[(c, True, True)] / by[(c, False, True)] for c in CONCURRENCY}
    for c in (1, 64):
        out[f"chain_on_vs_off_c{c}"] = by[(c, True, True)] / by[(c, True, False)]
    return out


def hash_cost_us() -> float:
    """CPU microseconds per event spent on the chain (envelope + SHA-256), measured in-process."""
    data = msgspec.json.encode(sample_event(0))
    prev = b"\x00" * 32
    n = 20_000
    started = time.perf_counter()
    for i in range(n):
        prev = batch_module.chain_hash(prev, i, batch_module.record_bytes("s", i, "id", 1.0, data))
    return (time.perf_counter() - started) / n * 1e6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench-store`` options."""
    parser.add_argument("--pg", required=True, metavar="URL", help="PostgreSQL URL (a schema per scenario is created and dropped)")
    parser.add_argument("--quick", action="store_true", help="2 s per scenario (whole run < 60 s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per scenario (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point for ``baton bench-store``."""
    seconds = 2.0 if args.quick else args.seconds
    results = asyncio.run(run(args.pg, seconds))
    summary = ratios(results)
    cost = hash_cost_us()
    if args.json:
        payload = {"results": [asdict(r) | {"rate": r.rate} for r in results], "ratios": summary, "chain_us_per_event": cost}
        print(msgspec.json.format(msgspec.json.encode(payload).decode()))
        return 0
    print(f"{'scenario':<24} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r.name:<24} {r.rate:>10,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}")
    print()
    for key, value in summary.items():
        print(f"{key:<24} {value:>8.2f}x")
    print(f"{'chain CPU per event':<24} {cost:>8.1f} µs")
    return 0
