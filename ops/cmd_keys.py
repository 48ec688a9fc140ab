"""``baton keys …`` (signing keys) and ``baton hash-secret`` (client secrets).

``keys`` is a command group: each action is one ``_add_*`` function registering
a sub-subcommand, so rotation actions (rotate, promote, retire, list) slot in
beside ``generate``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from app.keys import generate_key, write_key_file
from app.secrets import hash_secret, random_secret

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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``keys`` group and ``hash-secret``."""
    keys = subparsers.add_parser("keys", help="manage Baton's signing keys", description="Manage Baton's signing keys.")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")

    def no_action(args: argparse.Namespace) -> int:
        keys.print_help()
        return 2

    keys.set_defaults(func=no_action)
    _add_generate(keys_sub)

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
