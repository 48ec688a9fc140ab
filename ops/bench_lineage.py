"""``baton bench-revocation``: how long revoking a token with 10,000 descendants takes.

Builds a lineage tree (a root, then ``fanout`` children per token, level by
level until ``descendants`` tokens exist) through the real store and inline
projection, then times, in the same run:

- the baseline: appending one event that touches no lineage row;
- the cascade: appending ``TokenRevoked`` for the root (every descendant marked);
- the lookup the exchange path makes for the deepest token (one indexed read).

Reported as milliseconds and as ratios to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from eventstore import NO_STREAM, TokenExchanged, TokenRevoked, open_store
from projections.lineage import LineageProjection, LineageReader


def _exchanged(jti: str, parent: str | None, root: str, depth: int) -> TokenExchanged:
    now = int(time.time())
    return TokenExchanged(
        at=float(now), request_id=uuid.uuid4().hex, client_id="bench", kind="impersonation",
        subject_iss="https://idp.bench", subject_sub="alice", subject_token_type="urn:ietf:params:oauth:token-type:access_token",
        parent_jti=parent, root_jti=root, depth=depth, audience=["bench"], issued_jti=jti,
        issued_token_type="urn:ietf:params:oauth:token-type:access_token", issued_at=now, expires_at=now + 300,
        token_sha256="0" * 64, kid="bench",
    )


async def _build_tree(store: Any, descendants: int, fanout: int) -> tuple[str, str]:
    root = f"root-{uuid.uuid4().hex[:8]}"
    await store.append(f"token-{root}", [_exchanged(root, None, root, 1)], expected_version=NO_STREAM)
    level, made, depth, deepest = [root], 0, 1, root
    while made < descendants:
        depth += 1
        nxt: list[str] = []
        appends = []
        for parent in level:
            for i in range(fanout):
                if made >= descendants:
                    break
                jti = f"{parent}.{i}"
                appends.append(store.append(f"token-{jti}", [_exchanged(jti, parent, root, depth)], expected_version=NO_STREAM))
                nxt.append(jti)
                made += 1
        for start in range(0, len(appends), 500):  # concurrent appends share group-commit batches
            await asyncio.gather(*appends[start : start + 500])
        level, deepest = nxt, nxt[-1]
    return root, deepest


async def run(url: str, descendants: int, fanout: int, repeats: int) -> dict[str, Any]:
    """Build ``repeats`` trees and time baseline append, cascade revocation and lookup."""
    store = open_store(url, [LineageProjection()])
    await store.open()
    reader = LineageReader(store)
    baseline, cascade, lookup = [], [], []
    try:
        for _ in range(repeats):
            root, deepest = await _build_tree(store, descendants, fanout)
            for _ in range(5):  # a revocation that matches no token: same statements, nothing to mark
                started = time.perf_counter()
                await store.append("bench-baseline", [TokenRevoked(at=time.time(), jti="no-such-token", by="bench")])
                baseline.append(time.perf_counter() - started)
            started = time.perf_counter()
            await store.append(f"token-{root}", [TokenRevoked(at=time.time(), jti=root, by="bench", reason="bench")])
            cascade.append(time.perf_counter() - started)
            started = time.perf_counter()
            row = await reader.get(deepest)
            lookup.append(time.perf_counter() - started)
            assert row is not None and row.revoked, "the deepest descendant must be revoked"
            revoked = await store.fetch("SELECT COUNT(*) FROM lineage WHERE root_jti = $1 AND revoked_at IS NOT NULL", root)
            assert int(revoked[0][0]) == descendants + 1
    finally:
        await store.close()
    base = statistics.median(baseline)
    return {
        "backend": url.split(":", 1)[0],
        "descendants": descendants,
        "fanout": fanout,
        "repeats": repeats,
        "baseline_append_ms": round(base * 1000, 3),
        "cascade_revoke_ms": round(statistics.median(cascade) * 1000, 3),
        "deepest_lookup_ms": round(statistics.median(lookup) * 1000, 3),
        "cascade_vs_baseline": round(statistics.median(cascade) / base, 1),
    }


def _run_cli(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as scratch:
        urls = [args.sqlite or f"sqlite:///{Path(scratch)}/events.db"]
        if args.pg:
            urls.append(args.pg)
        results = [asyncio.run(run(url, args.descendants, args.fanout, args.repeats)) for url in urls]
    for r in results:
        print(
            f"{r['backend']:>10}: revoke root of {r['descendants']} descendants in {r['cascade_revoke_ms']} ms "
            f"(baseline append {r['baseline_append_ms']} ms, ×{r['cascade_vs_baseline']}); "
            f"lookup of the deepest token {r['deepest_lookup_ms']} ms"
        )
    if args.json:
        Path(args.json).write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``baton bench-revocation``."""
    parser = subparsers.add_parser(
        "bench-revocation",
        help="time revoking a token with 10,000 descendants (SQLite, and PostgreSQL with --pg)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--descendants", type=int, default=10_000)
    parser.add_argument("--fanout", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sqlite", help="sqlite:///path (default: a temporary file)")
    parser.add_argument("--pg", help="also run on this PostgreSQL URL (use a scratch database or schema)")
    parser.add_argument("--json", help="write the results as JSON to this file")
    parser.set_defaults(func=_run_cli)
