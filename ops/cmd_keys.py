"""``baton keys …`` (signing keys) and ``baton hash-secret`` (client secrets).

``keys`` is a command group: each action is one ``_add_*`` function registering
a sub-subcommand. ``rotate``, ``promote`` and ``retire`` change the key file
named by ``--config`` under its lock, record each change as a
``SigningKeyRotated`` event in the configured store first, and remove retired
keys whose tokens have all expired; running instances pick the file up within
``signing.reload_seconds``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from app.config import Config
from app.key_lifecycle import (
    KeyChange,
    LifecycleError,
    describe,
    max_token_lifetime,
    promote,
    prune,
    retire,
    rotate,
)
from app.key_schedule import Transform, apply_key_change
from app.keys import Jwk, generate_key, read_key_file, write_key_file
from app.secrets import hash_secret, random_secret
from eventstore.store import EventStore

from .cmd_store import run_command, with_store
from .serving import fail

ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA", "Ed25519")
DEFAULT_KEY_FILE = "baton-data/signing-keys.json"


def cmd_keys_generate(args: argparse.Namespace) -> int:
    """Write a private JWK set holding one new active key; print its ``kid``."""
    path = Path(args.output)
    if path.exists() and not args.force:
        return fail(f"{path} exists; use --force to replace it (its keys would be lost)")
    key = generate_key(args.alg)
    write_key_file(path, [key])
    print(key["kid"])
    return 0


def _then_prune(config: Config, now: float, step: Transform) -> Transform:
    """``step`` followed by removing retired keys whose tokens have all expired."""
    lifetime = max_token_lifetime(config)

    def transform(keys: list[Jwk]) -> tuple[list[Jwk], list[KeyChange]]:
        keys, changes = step(keys)
        keys, removed = prune(keys, now, lifetime)
        return keys, changes + removed

    return transform


def _change_keys(args: argparse.Namespace, step_for: Callable[[Config, float], Transform]) -> int:
    """Apply one lifecycle step to the configured key file, recording it in the configured store."""

    async def body(config: Config) -> int:
        now = time.time()
        transform = _then_prune(config, now, step_for(config, now))

        async def work(store: EventStore) -> int:
            try:
                changes = await apply_key_change(config.signing.keys, store, transform, now)
            except LifecycleError as exc:
                return fail(str(exc))
            _print_changes(changes)
            return 0

        return await with_store(config, work)

    return run_command(args, body)


def _print_changes(changes: Sequence[KeyChange]) -> None:
    for change in changes:
        print(f"{change.kid} {change.state}")


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Add a next key (published in JWKS, not signing until promoted)."""
    return _change_keys(args, lambda config, now: lambda keys: rotate(keys, args.alg or config.signing.algorithm, now))


def cmd_keys_promote(args: argparse.Namespace) -> int:
    """Make the next key active; the active key becomes retired."""

    def step(config: Config, now: float) -> Transform:
        min_age = 0.0 if args.force else float(config.signing.promote_after)
        return lambda keys: promote(keys, now, kid=args.kid, min_age=min_age)

    return _change_keys(args, step)


def cmd_keys_retire(args: argparse.Namespace) -> int:
    """Retire a key (a next key is removed at once)."""
    given = {kid for kid in (args.kid, args.kid_option) if kid is not None}
    if len(given) != 1:
        return fail("name the key to retire once: `baton keys retire KID` or `--kid KID`")
    kid = given.pop()
    return _change_keys(args, lambda config, now: lambda keys: retire(keys, kid, now))


def _when(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_keys_list(args: argparse.Namespace) -> int:
    """Print state, kid, alg, created and expiry of every key (no private material)."""

    async def body(config: Config) -> int:
        rows = describe(read_key_file(config.signing.keys), max_token_lifetime(config))
        print(f"{'STATE':<8} {'KID':<44} {'ALG':<8} {'CREATED':<20} EXPIRES")
        for row in rows:
            print(f"{row.state:<8} {row.kid:<44} {row.alg:<8} {_when(row.created):<20} {_when(row.expires)}")
        return 0

    return run_command(args, body)


def _read_secret(from_stdin: bool) -> str | None:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Client secret: ")
    if getpass.getpass("Again: ") != first:
        return None
    return first


def cmd_hash_secret(args: argparse.Namespace) -> int:
    """Print the scrypt hash of a secret (prompted, from stdin, or generated)."""
    if args.generate:
        secret = random_secret()
        print(f"secret: {secret}")
        print(f"secret_hash: {hash_secret(secret)}")
        return 0
    secret = _read_secret(args.secret_stdin)
    if secret is None:
        return fail("the two secrets differ")
    if not secret:
        return fail("the secret is empty")
    print(hash_secret(secret))
    return 0


def _add_generate(keys_sub: argparse._SubParsersAction) -> None:
    parser = keys_sub.add_parser(
        "generate",
        help="write a private JWK set with one new signing key",
        description="Generate a signing key and write it as a private JWK set (mode 0600); prints the key id.",
    )
    parser.add_argument("--alg", choices=ALGORITHMS, default="ES256", help="signature algorithm (default ES256)")
    parser.add_argument(
        "-o", "--output", default=DEFAULT_KEY_FILE, metavar="FILE", help=f"key file to write (default {DEFAULT_KEY_FILE})"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing key file")
    parser.set_defaults(func=cmd_keys_generate)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("BATON_CONFIG", "baton.toml")
    parser.add_argument("--config", "-c", default=default, metavar="FILE", help="baton.toml (default: %(default)s)")


def _add_lifecycle(keys_sub: argparse._SubParsersAction) -> None:
    parser = keys_sub.add_parser(
        "rotate",
        help="add a next key (published, not yet signing)",
        description="Add a next signing key: published in /jwks at once, signing only after `baton keys promote`.",
    )
    _config_arg(parser)
    parser.add_argument("--alg", choices=ALGORITHMS, help="algorithm (default: signing.algorithm)")
    parser.set_defaults(func=cmd_keys_rotate)

    parser = keys_sub.add_parser(
        "promote",
        help="make the next key active; retire the active one",
        description=(
            "Make the next key sign; the key that was active is retired (published until its tokens expire). "
            "Refused until the next key has been published for signing.promote_after seconds."
        ),
    )
    _config_arg(parser)
    parser.add_argument("--kid", help="the next key to promote (default: the only one)")
    parser.add_argument("--force", action="store_true", help="promote even if caches may not have the key yet")
    parser.set_defaults(func=cmd_keys_promote)

    parser = keys_sub.add_parser(
        "retire",
        help="retire a key (it stops signing, stays published until its tokens expire)",
        description="Retire a key. A next key signed nothing and is removed at once; the only active key cannot be retired.",
    )
    _config_arg(parser)
    # a kid is a base64url thumbprint: one in 64 starts with "-", which argparse reads as an option
    parser.add_argument("kid", nargs="?", help="key id (one that starts with '-' goes after '--': retire -- -Q5qp…)")
    parser.add_argument("--kid", dest="kid_option", metavar="KID", help="the key id, as `keys promote --kid` takes it")
    parser.set_defaults(func=cmd_keys_retire)

    parser = keys_sub.add_parser(
        "list", help="list keys: state, kid, alg, created, expiry", description="List the signing keys (public facts only)."
    )
    _config_arg(parser)
    parser.set_defaults(func=cmd_keys_list)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``keys`` group and ``hash-secret``."""
    keys = subparsers.add_parser("keys", help="manage Baton's signing keys", description="Manage Baton's signing keys.")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")

    def no_action(args: argparse.Namespace) -> int:
        keys.print_help()
        return 2

    keys.set_defaults(func=no_action)
    _add_generate(keys_sub)
    _add_lifecycle(keys_sub)

    hash_p = subparsers.add_parser(
        "hash-secret",
        help="hash a client secret for secret_hash (scrypt)",
        description=(
            "Print the scrypt hash of a client secret, for secret_hash in baton.toml. "
            "Prompts twice unless --secret-stdin or --generate."
        ),
    )
    source = hash_p.add_mutually_exclusive_group()
    source.add_argument("--secret-stdin", action="store_true", help="read the secret from the first line of stdin")
    source.add_argument("--generate", action="store_true", help="generate a random secret; print it and its hash")
    hash_p.set_defaults(func=cmd_hash_secret)
