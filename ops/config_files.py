"""Generated configuration for Baton processes that ops tools start: TOML text and free loopback ports.

``baton bench`` and the fault scenarios write a ``baton.toml`` for the
processes they start and pick ports for them; tests do the same. Only the
JSON-like subset Baton's configuration needs is written (strings, numbers,
booleans, lists, tables, arrays of tables; nested tables inline).
"""

from __future__ import annotations

import json
import socket
from typing import Any


def toml_value(value: Any) -> str:
    """A TOML inline value for JSON-like data (TOML basic strings accept JSON string escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def toml_text(config: dict[str, Any]) -> str:
    """TOML for a Baton configuration (top-level keys, tables, arrays of tables; nested tables inline)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in config.items() if not isinstance(v, (dict, list))]
    for name, value in config.items():
        if isinstance(value, dict):
            lines.append(f"\n[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            for item in value:
                lines.append(f"\n[[{name}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the process it is meant for binds it itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
