"""The README's Quickstart is what the issue promises and what .ci/run executes."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
DEMO = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/baton demo"
TESTS = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest -q"


def _quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def test_quickstart_installs_and_starts_the_demo_then_runs_the_tests() -> None:
    """First command: install + ``baton demo``; second: install test extras + the whole suite."""
    assert _quickstart_commands()[:2] == [DEMO, TESTS]


def test_ci_marker_runs_the_readme_test_command() -> None:
    """The marker .ci/run checks is the second command (plus only -p no:cacheprovider), right above it."""
    marker = f"<!-- test-command: {TESTS} -p no:cacheprovider -->"
    assert README.count("<!-- test-command:") == 1
    assert f"{marker}\n```sh\n{TESTS}\n```" in README


def test_ci_run_runs_the_readme_test_command_verbatim() -> None:
    """.ci/run holds the README marker's command word for word and runs it."""
    ci_run = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert f'TEST_COMMAND="{TESTS} -p no:cacheprovider"' in ci_run
    assert 'bash -c "$TEST_COMMAND"' in ci_run
