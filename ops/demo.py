"""``baton demo``: a ready-to-run configuration and the curl commands that exercise it.

The demo runs Baton on SQLite + the in-process cache with the built-in demo IdP
(``/demo-idp``) as its only trusted issuer, two clients and two audiences. Client
secrets are generated afresh on every run and stored only as scrypt hashes;
the plaintexts are printed once, inside the curl commands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from app.demo_idp import MOUNT_PATH
from app.secrets import hash_secret, random_secret
from app.types import GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN

CONFIG_NAME = "baton.toml"
DEMO_USER = "alice"
DEMO_SERVICE = "svc:checkout"

WARNING = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  BATON DEMO MODE - NOT FOR PRODUCTION                                 !!
!!  The demo identity provider at /demo-idp mints a token for ANY user   !!
!!  without a password. Use `baton init` + `baton serve` for real work.  !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


@dataclass(frozen=True)
class DemoSetup:
    """What ``baton demo`` wrote: the config file, Baton's URL and the clients' plaintext secrets."""

    config_path: Path
    issuer: str
    frontend_secret: str
    reporting_secret: str


def _q(value: str) -> str:
    """A TOML basic string (JSON string syntax is a subset TOML accepts for these values)."""
    return json.dumps(value)


def demo_toml(directory: Path, port: int, frontend_hash: str, reporting_hash: str) -> str:
    """The demo ``baton.toml`` text; every path lives inside ``directory`` (absolute)."""
    issuer = f"http://127.0.0.1:{port}"
    data = directory.resolve()
    return f"""\
# Baton demo configuration, written by `baton demo`. NOT FOR PRODUCTION:
# `demo = true` mounts an identity provider that mints tokens for anyone.
issuer = {_q(issuer)}
demo = true

[server]
host = "127.0.0.1"
port = {port}

[store]
url = {_q("sqlite:///" + str(data / "events.db"))}

[cache]
url = "memory://"

[signing]
algorithm = "ES256"
keys = {_q(str(data / "signing-keys.json"))}

[tokens]
ttl = 300
max_depth = 3

# The built-in demo IdP, found by OIDC discovery like any real issuer.
[[trusted_issuers]]
issuer = {_q(issuer + MOUNT_PATH)}
algorithms = ["ES256"]
audiences = ["frontend"]

# Exchanges by impersonation, or by delegation with an actor_token.
[[clients]]
client_id = "frontend"
secret_hash = {_q(frontend_hash)}
auth_method = "client_secret_basic"
audiences = ["billing", "orders"]
scopes = ["billing:read", "billing:write", "orders:read"]
delegation = true
impersonation = true
actor = "token"

# Delegation only; the client itself is recorded as the actor.
[[clients]]
client_id = "reporting"
secret_hash = {_q(reporting_hash)}
auth_method = "client_secret_post"
audiences = ["orders"]
scopes = ["orders:read"]
delegation = true
impersonation = false
actor = "client"

[[audiences]]
audience = "billing"
scopes = ["billing:read", "billing:write"]
ttl = 120
claims = {{ copy = ["email"], set = {{ tenant = "eu" }} }}

[[audiences]]
audience = "orders"
scopes = ["orders:read", "orders:write"]
"""


def write_demo_config(directory: Path, port: int) -> DemoSetup:
    """Write ``directory/baton.toml`` with freshly generated client secrets (hashed in the file)."""
    directory.mkdir(parents=True, exist_ok=True)
    frontend, reporting = random_secret(), random_secret()
    path = directory / CONFIG_NAME
    path.write_text(demo_toml(directory, port, hash_secret(frontend), hash_secret(reporting)))
    path.chmod(0o600)
    return DemoSetup(path, f"http://127.0.0.1:{port}", frontend, reporting)


_EXTRACT = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
_PRETTY = "python3 -m json.tool"


def curl_commands(setup: DemoSetup) -> str:
    """Ready-to-paste shell commands: mint tokens at the demo IdP, exchange them at Baton."""
    idp = setup.issuer + MOUNT_PATH + "/token"
    token = setup.issuer + "/token"
    exchange = f"-d grant_type={GRANT_TOKEN_EXCHANGE}"
    subject = f'-d subject_token="$USER_TOKEN" -d subject_token_type={TT_ACCESS_TOKEN}'
    return f"""\
# 1. Mint a user access token for {DEMO_USER} at the demo IdP:
USER_TOKEN=$(curl -s {idp} \\
  -d username={DEMO_USER} -d email={DEMO_USER}@example.com | {_EXTRACT})

# 2. Impersonation: client "frontend" becomes {DEMO_USER} towards "billing":
curl -s {token} -u frontend:{setup.frontend_secret} \\
  {exchange} \\
  {subject} \\
  -d audience=billing -d scope=billing:read | {_PRETTY}

# 3. Mint a service token for {DEMO_SERVICE} (the actor) at the demo IdP:
SERVICE_TOKEN=$(curl -s {idp} -d username={DEMO_SERVICE} | {_EXTRACT})

# 4. Delegation: {DEMO_SERVICE} acts for {DEMO_USER} towards "orders" (the token carries act):
curl -s {token} -u frontend:{setup.frontend_secret} \\
  {exchange} \\
  {subject} \\
  -d actor_token="$SERVICE_TOKEN" -d actor_token_type={TT_ACCESS_TOKEN} \\
  -d audience=orders -d scope=orders:read | {_PRETTY}

# 5. Delegation by client "reporting" (actor = the client itself, client_secret_post):
curl -s {token} \\
  -d client_id=reporting -d client_secret={setup.reporting_secret} \\
  {exchange} \\
  {subject} \\
  -d audience=orders | {_PRETTY}
"""
