"""``--help`` works on every ``baton`` command and subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from ops.cli import build_parser, main


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _command_paths(sub, (*prefix, name))


COMMANDS = sorted(_command_paths(build_parser()))


def test_the_documented_commands_exist() -> None:
    """The commands the README promises are all registered."""
    names = {" ".join(path) for path in COMMANDS}
    assert {"serve", "demo", "init", "keys", "keys generate", "hash-secret"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_on_every_command(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """``baton … --help`` prints usage naming the command and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: baton " + " ".join(path))


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """``baton --help`` lists the commands; ``baton`` alone prints help and exits 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "serve" in capsys.readouterr().out
    assert main([]) == 2
