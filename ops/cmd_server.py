"""``baton serve``, ``baton demo`` and ``baton init``: run Baton, try it, start a configuration."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from app.config import ConfigError, load_config
from app.keys import KeyError_ as KeyFileError
from app.secrets import hash_secret, random_secret

from . import demo
from .serving import fail, serve

TEMPLATE_PLACEHOLDER = "REPLACE-WITH-OUTPUT-OF-baton-hash-secret"


def _serve_file(path: str | Path) -> int:
    try:
        config = load_config(path)
        return serve(config, path)
    except (ConfigError, KeyFileError) as exc:
        return fail(str(exc))


def cmd_serve(args: argparse.Namespace) -> int:
    """Run Baton from a configuration file under hypercorn."""
    return _serve_file(args.config)


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the demo configuration, print how to use it, then serve it."""
    setup = demo.write_demo_config(Path(args.dir), args.port)
    print(demo.WARNING, file=sys.stderr)
    print(f"Demo configuration: {setup.config_path}")
    print(f"Client secrets (shown once): frontend={setup.frontend_secret} reporting={setup.reporting_secret}")
    print(f"Baton: {setup.issuer}   demo IdP: {setup.issuer}/demo-idp\n")
    print("Try it (paste into another shell once Baton is running):\n")
    print(demo.curl_commands(setup), flush=True)
    sys.stderr.flush()
    return _serve_file(setup.config_path)


def template_text() -> str:
    """The commented starter ``baton.toml`` shipped in ``ops/templates``."""
    return resources.files("ops").joinpath("templates/baton.toml").read_text(encoding="utf-8")


def cmd_init(args: argparse.Namespace) -> int:
    """Write a commented starter ``baton.toml`` with a freshly generated client secret."""
    path = Path(args.dir) / "baton.toml"
    if path.exists() and not args.force:
        return fail(f"{path} exists; use --force to overwrite it")
    secret = random_secret()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template_text().replace(TEMPLATE_PLACEHOLDER, hash_secret(secret)), encoding="utf-8")
    path.chmod(0o600)
    print(f"Wrote {path}")
    print(f"Secret of the example client 'frontend' (shown once, only its hash is stored): {secret}")
    print(f"Edit the file, then run: baton serve --config {path}")
    return 0


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("port must be 1..65535")
    return port


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``demo`` and ``init``."""
    serve_p = subparsers.add_parser(
        "serve",
        help="run Baton under hypercorn",
        description="Run Baton from a configuration file under hypercorn ([server] sets host, port, workers, timeouts).",
    )
    serve_p.add_argument("--config", "-c", required=True, metavar="FILE", help="path to baton.toml")
    serve_p.set_defaults(func=cmd_serve, handles_signals=True)

    demo_p = subparsers.add_parser(
        "demo",
        help="run a demo Baton with a built-in identity provider (NOT for production)",
        description=(
            "Write a demo configuration (SQLite + in-process cache, a demo identity provider, two clients, "
            "two audiences), print ready-to-paste curl commands, and serve it. NOT for production."
        ),
    )
    demo_p.add_argument("--port", type=_port, default=8000, help="port on 127.0.0.1 (default 8000)")
    demo_p.add_argument("--dir", default="baton-demo", help="directory for config, keys and events (default ./baton-demo)")
    demo_p.set_defaults(func=cmd_demo, handles_signals=True)

    init_p = subparsers.add_parser(
        "init",
        help="write a commented starter baton.toml",
        description="Write DIR/baton.toml: every key commented, with a generated secret for the example client.",
    )
    init_p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="directory to write baton.toml into (default .)")
    init_p.add_argument("--force", action="store_true", help="overwrite an existing baton.toml")
    init_p.set_defaults(func=cmd_init)
