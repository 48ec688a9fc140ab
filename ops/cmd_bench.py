"""``baton bench``: load-test Baton's token endpoint against a bare verify-and-sign ceiling."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ops.bench import SCENARIOS, Options, run, table, write_json
from ops.bench_env import BenchSetup
from ops.serving import fail

QUICK = {"concurrencies": [32], "duration": 2.0, "warmup": 0.5, "users": 400, "chains": 100}


def _concurrencies(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def _scenarios(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in SCENARIOS]
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SCENARIOS)}")
    return values


def _joined(lists: list[list[Any]] | None) -> list[Any]:
    """The values of a repeated list option (``--concurrency 8,32 --concurrency 64``), in order, each once."""
    return list(dict.fromkeys(v for values in lists or [] for v in values))


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print (and optionally save) the report."""
    if args.prepare:
        setup = BenchSetup.create(Path(args.prepare))
        setup.save()
        config = setup.config(port=8000, store_url=f"sqlite:///{Path(args.prepare).resolve()}/events.db",
                              cache_url="memory://", workers=args.workers, worker_class=args.worker_class)
        path = setup.write_config(config)
        print(f"Wrote {path} and the bench keys. Start Baton with it (edit [store]/[cache] as you like):\n"
              f"  baton serve --config {path}\nthen: baton bench --target http://127.0.0.1:8000 --workdir {args.prepare}")
        return 0
    if args.target and not args.workdir:
        return fail("--target needs --workdir DIR prepared with --prepare DIR (the target must trust the bench issuer)")
    if bool(args.pg) != bool(args.redis):
        return fail("--pg and --redis go together (the PostgreSQL + Redis backend)")
    options = Options(
        workers=args.workers, worker_class=args.worker_class, pg=args.pg, redis=args.redis,
        embedded=not args.no_embedded, target=args.target, generator=args.generator, ceiling=not args.no_ceiling,
        workdir=Path(args.workdir) if args.workdir else None,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.quick:
        for name, value in QUICK.items():
            setattr(options, name, value)
    if args.concurrency:
        options.concurrencies = _joined(args.concurrency)
    if args.duration:
        options.duration = args.duration
    if args.scenarios:
        options.scenarios = _joined(args.scenarios)
    try:
        report = run(options)
    except RuntimeError as exc:
        return fail(str(exc), 1)
    print(table(report))
    if args.json:
        write_json(report, args.json)
        print(f"JSON report: {args.json}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench``."""
    p = subparsers.add_parser(
        "bench",
        help="load-test POST /token (exchanges/s, latency, CPU, DB and Redis cost) against a ceiling",
        description=(
            "Start Baton (or aim at a running one), serve a trusted issuer on loopback, pre-mint tokens for many "
            "users and drive POST /token with wrk (apt-get install wrk) or a built-in asyncio generator. Scenarios: "
            + ", ".join(SCENARIOS) + ". Reports exchanges/s, p50/p95/p99, errors, server CPU, DB transactions and "
            "Redis round trips per exchange, each also as a ratio to a bare verify+sign endpoint measured in the "
            "same run (before the first scenario and after each; a scenario is compared with the two around it). "
            "See docs/performance.md."
        ),
    )
    p.add_argument("--quick", action="store_true", help="one concurrency (32), 2 s per scenario: under two minutes")
    p.add_argument("--concurrency", type=_concurrencies, action="append", metavar="N,N",
                   help="connections per run (default 8,32,64; may be repeated)")
    p.add_argument("--duration", type=float, metavar="S", help="seconds per run (default 5)")
    p.add_argument("--scenarios", type=_scenarios, action="append", metavar="A,B",
                   help=f"subset of: {', '.join(SCENARIOS)} (may be repeated)")
    p.add_argument("--pg", metavar="URL", help="PostgreSQL server (a throwaway database is created on it and dropped)")
    p.add_argument("--redis", metavar="URL", help="Redis for the PostgreSQL backend (use a dedicated one: "
                                                   "INFO commandstats is server-wide)")
    p.add_argument("--no-embedded", action="store_true", help="skip the embedded SQLite + memory backend")
    p.add_argument("--no-ceiling", action="store_true", help="skip the bare verify+sign ceiling")
    p.add_argument("--workers", type=int, default=2, help="hypercorn worker processes (default 2)")
    p.add_argument("--worker-class", choices=["uvloop", "asyncio"], default="uvloop", help="default uvloop")
    p.add_argument("--generator", choices=["auto", "wrk", "builtin"], default="auto",
                   help="load generator (auto: wrk when on PATH)")
    p.add_argument("--target", metavar="URL", help="measure a running Baton (configured from --prepare)")
    p.add_argument("--workdir", metavar="DIR", help="keep generated config, keys, logs and data here")
    p.add_argument("--prepare", metavar="DIR", help="write a config + keys for --target runs, then exit")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.set_defaults(func=cmd_bench)
