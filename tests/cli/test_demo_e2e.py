"""``baton demo`` end to end: start it, then run the curl commands it prints, over real HTTP."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from ops.config_files import free_port

from .conftest import baton_command, cli_env


@dataclass
class Demo:
    """A running ``baton demo``: its URL and what it printed."""

    url: str
    output: str
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One ``baton demo`` subprocess on a free port, up once /healthz answers."""
    directory = tmp_path_factory.mktemp("demo")
    port = free_port()
    out_path, err_path = directory / "stdout.txt", directory / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            baton_command("demo", "--port", str(port), "--dir", str(directory / "baton-demo")),
            cwd=directory, env=cli_env(), stdout=out, stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"baton demo exited {process.returncode}: {err_path.read_text()}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"baton demo did not become healthy: {err_path.read_text()}")
            time.sleep(0.1)
        yield Demo(url, out_path.read_text(), directory / "baton-demo", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Command:
    """One printed shell command: an optional ``VAR=$(…)`` capture around a curl call."""

    variable: str | None
    url: str
    user: str | None
    form: list[tuple[str, str]]


def printed_commands(output: str) -> list[Command]:
    """Parse the curl commands ``baton demo`` printed (continuation lines joined, pipes dropped)."""
    text = output.replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.strip()
        match = re.fullmatch(r"(\w+)=\$\((curl .*)\)", line)
        variable, shell = (match.group(1), match.group(2)) if match else (None, line)
        if not shell.startswith("curl "):
            continue
        words = shlex.split(shell.split(" | ", 1)[0])
        url = next(w for w in words if w.startswith("http"))
        user = words[words.index("-u") + 1] if "-u" in words else None
        form = [tuple(words[i + 1].split("=", 1)) for i, w in enumerate(words) if w == "-d"]
        commands.append(Command(variable, url, user, form))  # type: ignore[arg-type]
    return commands


def run_printed(commands: list[Command]) -> list[dict[str, Any]]:
    """Run the commands with httpx exactly as curl would, substituting captured variables."""
    variables: dict[str, str] = {}
    responses = []
    with httpx.Client(timeout=10) as client:
        for command in commands:
            form = {k: re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], v) for k, v in command.form}
            assert len(form) == len(command.form), "a parameter is repeated"
            auth = tuple(command.user.split(":", 1)) if command.user else None
            response = client.post(command.url, data=form, auth=auth)  # type: ignore[arg-type]
            assert response.status_code == 200, response.text
            body = response.json()
            responses.append(body)
            if command.variable:
                variables[command.variable] = body["access_token"]
    return responses


def _claims(demo: Demo, token: str) -> dict[str, Any]:
    jwks = httpx.get(demo.url + "/jwks").json()
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == header["kid"])
    return jwt.decode(token, key, algorithms=[header["alg"]], options={"verify_aud": False}, issuer=demo.url)


def test_demo_prints_warning_and_secrets_only_hashed_on_disk(demo: Demo) -> None:
    """The demo warns it is not for production; secrets are printed, the config holds only their hashes."""
    assert "NOT FOR PRODUCTION" in (demo.directory.parent / "stderr.txt").read_text()
    secrets = re.search(r"frontend=(\S+) reporting=(\S+)", demo.output)
    assert secrets is not None
    config = (demo.directory / "baton.toml").read_text()
    assert secrets.group(1) not in config and secrets.group(2) not in config
    assert config.count('secret_hash = "scrypt$') == 2


def test_printed_exchanges_work(demo: Demo) -> None:
    """Impersonation, delegation with an actor token, and client-actor delegation all issue tokens as printed."""
    commands = printed_commands(demo.output)
    assert [c.variable for c in commands] == ["USER_TOKEN", None, "SERVICE_TOKEN", None, None]
    responses = run_printed(commands)
    impersonation, delegation, reporting = (responses[i] for i in (1, 3, 4))

    claims = _claims(demo, impersonation["access_token"])
    assert impersonation["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert (claims["sub"], claims["aud"], claims["client_id"]) == ("alice", "billing", "frontend")
    assert claims["scope"] == impersonation["scope"] == "billing:read"
    assert (claims["email"], claims["tenant"]) == ("alice@example.com", "eu")  # the billing claims mapping
    assert "act" not in claims
    assert claims["exp"] - claims["iat"] == impersonation["expires_in"] == 120

    claims = _claims(demo, delegation["access_token"])
    assert (claims["sub"], claims["aud"], claims["scope"]) == ("alice", "orders", "orders:read")
    assert claims["act"]["sub"] == "svc:checkout"

    claims = _claims(demo, reporting["access_token"])
    assert (claims["sub"], claims["client_id"]) == ("alice", "reporting")
    assert claims["act"]["sub"] == "reporting"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_printed_commands_paste_into_a_shell(demo: Demo) -> None:
    """The printed block, pasted into bash as is, produces three exchanged tokens."""
    script = demo.output[demo.output.index("# 1.") :]
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"access_token"') == 3
    assert '"error"' not in result.stdout


def test_sigterm_shuts_down_cleanly(demo: Demo) -> None:
    """SIGTERM stops Baton gracefully with exit code 0 (runs last: it ends the shared demo process)."""
    demo.process.terminate()
    assert demo.process.wait(timeout=15) == 0
