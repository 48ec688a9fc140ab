"""The configuration reference and the starter template cover every configuration key."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from app import config as config_module
from app.config import ENV_OVERRIDES, Config
from ops.cmd_server import template_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _struct_in(annotation: object) -> type[msgspec.Struct] | None:
    """The config table type behind a field annotation (a section, or a list of tables), if any."""
    for candidate in getattr(annotation, "__args__", (annotation,)):
        if getattr(candidate, "__origin__", None) is list:
            candidate = candidate.__args__[0]
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate
    return None


def _keys(struct: type[msgspec.Struct], prefix: str = "") -> list[str]:
    """Every leaf key of a config table; section names are headings, not keys (except ``claims.*``)."""
    keys = []
    for field in msgspec.structs.fields(struct):
        table = _struct_in(field.type)
        if table is config_module.ClaimsMapping:
            keys += _keys(table, field.name + ".")
        elif table is not None and table is not config_module.JWKSet:
            keys += _keys(table)
        else:
            keys.append(prefix + field.name)
    return keys


KEYS = sorted(set(_keys(Config)))


@pytest.mark.parametrize("key", KEYS)
def test_every_key_is_documented(key: str) -> None:
    """docs/configuration.md names each key of app/config.py in a table row."""
    assert f"| `{key}` |" in DOC.read_text()


@pytest.mark.parametrize("key", sorted({k.split(".")[-1] for k in KEYS} - {"copy", "rename", "set"}))
def test_every_key_is_in_the_template(key: str) -> None:
    """The starter template mentions every key, active or commented."""
    text = template_text()
    assert f"{key} = " in text


def test_env_overrides_documented() -> None:
    """Each environment override is listed with its key."""
    text = DOC.read_text()
    for name, path in ENV_OVERRIDES.items():
        assert f"| `{name}` | `{'.'.join(path)}` |" in text
