"""Projection and audit commands: ``baton replay``, ``baton projections status``, ``baton audit …``,
``baton export`` and ``baton bench-audit``.

Read-only commands open the store with no inline projections; ``replay``
opens it with the lineage projection so its tables exist before a rebuild.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import msgspec

from app.config import Config
from eventstore import EventStore, open_store
from ops.audit_render import TABLE_COLUMNS, draw_tree, summary_text, table
from ops.cmd_store import DEFAULT_CONFIG, ProgressBar, run_command, with_store
from projections import audit_queries as q
from projections.audit import AuditProjection
from projections.runner import AsyncProjection, RebuildProgress, ensure_schema, projection_status, rebuild

_json = msgspec.json.Encoder(order="deterministic")


def async_projections() -> dict[str, AsyncProjection]:
    """The projections the runner keeps caught up (rebuilt with a checkpoint, resumable)."""
    return {"audit": AuditProjection()}


def inline_projections() -> dict[str, Any]:
    """The projections updated inside the append (rebuilt in one transaction)."""
    try:
        from projections.lineage import LineageProjection
    except ImportError:  # not built in this tree
        return {}
    return {"lineage": LineageProjection()}


# --- replay ------------------------------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    """Rebuild one or all projections from position 0 (or ``--from P``), with a progress bar on stderr."""
    runner_side, inline = async_projections(), inline_projections()
    known = [*inline, *runner_side]
    names = known if args.projection == "all" else [args.projection]
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"baton replay: unknown projection {unknown[0]!r} (known: {', '.join(known)}, all)", file=sys.stderr)
        return 2
    if args.from_position and any(n in inline for n in names):
        print("baton replay: inline projections (lineage) are always rebuilt from position 0", file=sys.stderr)
        return 2

    async def body(config: Config) -> int:
        async def work(store: EventStore) -> int:
            for name in names:
                bar = ProgressBar(f"replay {name}", sys.stderr)  # the current stderr, not the one at import
                if name in inline:
                    from projections.rebuild import rebuild_inline

                    events, seconds = await rebuild_inline(store, inline[name], progress=bar)
                else:
                    head, _ = await store.head()
                    total = max(head - max(args.from_position - 1, 0), 0)

                    def progress(p: RebuildProgress, bar: ProgressBar = bar, total: int = total) -> None:
                        bar(p.events, max(total, p.events))

                    report = await rebuild(store, runner_side[name], args.from_position, progress=progress)
                    events, seconds = report.events, report.elapsed
                bar.close()
                rate = events / seconds if seconds > 0 else 0.0
                print(f"{name}: replayed {events:,} events in {seconds:.1f} s ({rate:,.0f} events/s)", file=sys.stderr)
            return 0

        # opened with the inline projections so that their tables exist before the rebuild
        store = open_store(config.store.url, [inline[n] for n in names if n in inline])
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return run_command(args, body)


# --- projections status ------------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """Checkpoint, head and lag of each asynchronous projection, and who holds its lease."""

    async def body(config: Config) -> int:
        async def work(store: EventStore) -> int:
            statuses = await projection_status(store, list(async_projections()))
            rows = [msgspec.to_builtins(s) for s in statuses]
            if args.json:
                print(_json.encode(rows).decode())
                return 0
            columns = [
                ("projection", lambda r: r["name"]),
                ("checkpoint", lambda r: r["checkpoint"]),
                ("head", lambda r: r["head"]),
                ("lag", lambda r: r["lag"]),
                ("lease", lambda r: r["lease_owner"] or "-"),
                ("lease expires", lambda r: q.iso(r["lease_expires_at"]) or "-"),
                ("rebuilding from", lambda r: "-" if r["rebuilding_from"] is None else r["rebuilding_from"]),
            ]
            sys.stdout.write(table(columns, rows))
            return 0

        return await with_store(config, work)

    return run_command(args, body)


# --- audit -------------------------------------------------------------------------------------------------------


def _time(value: str) -> float:
    try:
        return q.parse_time(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {value!r} (RFC 3339 or epoch seconds)") from None


def _print_page(query: str, page: dict[str, Any], fmt: str, out: TextIO) -> None:
    from app.audit_api import COLUMNS, csv_lines, jsonl_lines

    if fmt == "json":
        out.write(_json.encode(page).decode() + "\n")
    elif fmt == "jsonl":
        out.write(jsonl_lines(page["items"]))
    elif fmt == "csv":
        out.write(csv_lines(COLUMNS[query], page["items"], header=True))
    else:
        out.write(table(TABLE_COLUMNS[query], page["items"]))
        if page["next"] is not None:
            out.write(f"more: --after {page['next']}\n")


def cmd_audit(args: argparse.Namespace) -> int:
    """Run one audit query and print a table (or JSON, CSV, JSON Lines)."""

    async def body(config: Config) -> int:
        async def work(store: EventStore) -> int:
            await ensure_schema(store, [AuditProjection()])
            if args.query == "tree":
                tree = await q.token_tree(store, args.jti)
                if tree is None:
                    print(f"no exchange issued jti {args.jti!r}", file=sys.stderr)
                    return 1
                sys.stdout.write(_json.encode(tree).decode() + "\n" if args.format == "json" else draw_tree(tree))
                return 0
            if args.query == "subject":
                summary = await q.subject_summary(store, args.iss, args.sub)
                if summary is None:
                    print(f"no activity recorded for {args.sub} ({args.iss})", file=sys.stderr)
                    return 1
                sys.stdout.write(_json.encode(summary).decode() + "\n" if args.format == "json" else summary_text(summary))
                return 0
            kwargs = {f.name: getattr(args, f.name) for f in q.FILTERS[args.query] if getattr(args, f.name) is not None}
            try:
                page = await q.LIST_QUERIES[args.query](store, **kwargs, after=args.after, limit=args.limit)
            except ValueError as exc:
                print(f"baton audit: {exc}", file=sys.stderr)
                return 2
            _print_page(args.query, page, args.format, sys.stdout)
            return 0

        return await with_store(config, work)

    return run_command(args, body)


# --- export ------------------------------------------------------------------------------------------------------


class ExportedEvent(msgspec.Struct, kw_only=True):
    """One archived record: with these fields anyone can recompute the hash chain."""

    position: int
    stream: str
    stream_version: int
    event_id: str
    type: str
    recorded_at: float
    event: msgspec.Raw
    prev_hash: str
    hash: str


async def export_events(store: EventStore, out: Any, from_position: int = 1, page: int = 2000) -> int:
    """Write records from ``from_position`` as JSON Lines to the binary stream ``out``; the count.

    ``event`` holds the stored canonical bytes verbatim, so
    ``eventstore.hashing.chain_hash`` over the line's fields gives ``hash``.
    """
    encoder = msgspec.json.Encoder()
    count, position = 0, max(from_position, 1)
    while True:
        records = await store.read_all(position, page)
        if not records:
            return count
        out.write(
            b"".join(
                encoder.encode(
                    ExportedEvent(
                        position=r.position,
                        stream=r.stream_id,
                        stream_version=r.stream_version,
                        event_id=r.event_id,
                        type=r.event_type,
                        recorded_at=r.recorded_at,
                        event=msgspec.Raw(r.data),
                        prev_hash=r.prev_hash.hex(),
                        hash=r.hash.hex(),
                    )
                )
                + b"\n"
                for r in records
            )
        )
        count += len(records)
        position = records[-1].position + 1


def cmd_export(args: argparse.Namespace) -> int:
    """Write the log as JSON Lines (position, stream, type, event, prev_hash, hash) for archiving."""

    async def body(config: Config) -> int:
        async def work(store: EventStore) -> int:
            if args.output in (None, "-"):
                count = await export_events(store, sys.stdout.buffer, args.from_position)
                sys.stdout.buffer.flush()
            else:
                with Path(args.output).open("wb") as out:
                    count = await export_events(store, out, args.from_position)
            print(f"exported {count:,} events", file=sys.stderr)
            return 0

        return await with_store(config, work, read_only=True)

    return run_command(args, body)


# --- registration ------------------------------------------------------------------------------------------------


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="baton.toml (default: %(default)s)")


def _audit_parsers(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="audit queries: exchanges, denied, revocations, tree, subject")
    queries = audit.add_subparsers(dest="query", metavar="QUERY", required=True)
    for name, help_text in (
        ("exchanges", "token exchanges (by subject, actor anywhere in the chain, client, audience, time)"),
        ("denied", "refused exchanges and failed client authentications"),
        ("revocations", "token, subject and client revocations"),
    ):
        p = queries.add_parser(name, help=help_text)
        for f in q.FILTERS[name]:
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, help=f.help, type=_time if f.kind == "time" else str)
        p.add_argument("--after", type=int, default=0, metavar="P", help="cursor: show rows after position P")
        p.add_argument("--limit", type=int, default=50, help="rows per page (default: %(default)s)")
        p.add_argument("--format", choices=["table", "json", "csv", "jsonl"], default="table")
        _config_arg(p)
        p.set_defaults(func=cmd_audit)
    p = queries.add_parser("tree", help="draw the delegation tree of a token (ancestors and descendants)")
    p.add_argument("jti", help="the issued token's jti (write -- before one that begins with -)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    _config_arg(p)
    p.set_defaults(func=cmd_audit)
    p = queries.add_parser("subject", help="activity summary of one subject")
    p.add_argument("iss")
    p.add_argument("sub")
    p.add_argument("--format", choices=["text", "json"], default="text")
    _config_arg(p)
    p.set_defaults(func=cmd_audit)


def register(subparsers: Any) -> None:
    """Add the projection, audit, export and bench-audit commands to ``baton``."""
    p = subparsers.add_parser("replay", help="rebuild projections from the event log (resumable)")
    p.add_argument("--projection", default="all", metavar="NAME", help="audit, lineage or all (default: all)")
    p.add_argument("--from", dest="from_position", type=int, default=0, metavar="P", help="replay from position P")
    _config_arg(p)
    p.set_defaults(func=cmd_replay)

    p = subparsers.add_parser("projections", help="projection runner state")
    sub = p.add_subparsers(dest="projections_command", metavar="ACTION", required=True)
    status = sub.add_parser("status", help="checkpoint, head and lag of each projection")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _config_arg(status)
    status.set_defaults(func=cmd_status)

    _audit_parsers(subparsers)

    if "export" not in subparsers.choices:
        p = subparsers.add_parser("export", help="write the event log as JSON Lines with hashes, for archiving")
        p.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
        p.add_argument("--from", dest="from_position", type=int, default=1, metavar="P", help="start at position P")
        _config_arg(p)
        p.set_defaults(func=cmd_export)

    from ops.bench_audit import add_arguments, run_cli

    p = subparsers.add_parser("bench-audit", help="replay speed and p95 of each audit query on N synthetic events")
    add_arguments(p)
    p.set_defaults(func=run_cli)
