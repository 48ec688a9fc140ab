"""``baton bench``'s list options: repeated flags add up instead of the last one silently winning."""

from __future__ import annotations

from typing import Any

import pytest

import ops.cmd_bench as cmd_bench
from ops.bench import SCENARIOS, Options
from ops.cli import main


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[Options]:
    """The options ``baton bench`` would run with (nothing is started)."""
    seen: list[Options] = []

    def run(options: Options) -> dict[str, Any]:
        seen.append(options)
        return {}

    monkeypatch.setattr(cmd_bench, "run", run)
    monkeypatch.setattr(cmd_bench, "table", lambda report: "")
    return seen


@pytest.mark.parametrize(
    "argv,concurrencies,scenarios",
    [
        ([], [8, 32, 64], list(SCENARIOS)),
        (["--concurrency", "32", "--concurrency", "64"], [32, 64], list(SCENARIOS)),
        (["--concurrency", "8,32", "--concurrency", "32,128"], [8, 32, 128], list(SCENARIOS)),
        (["--scenarios", "chain3", "--scenarios", "denial,chain3"], [8, 32, 64], ["chain3", "denial"]),
        (["--quick"], [32], list(SCENARIOS)),
        (["--quick", "--concurrency", "16"], [16], list(SCENARIOS)),
    ],
)
def test_repeated_list_options_add_up(ran: list[Options], argv: list[str], concurrencies: list[int],
                                      scenarios: list[str]) -> None:
    """Each value given, in the order given, once; without the flag the defaults (or --quick's) hold."""
    assert main(["bench", *argv]) == 0
    [options] = ran
    assert options.concurrencies == concurrencies
    assert options.scenarios == scenarios


@pytest.mark.parametrize("argv", [["--concurrency", "0"], ["--concurrency", "x"], ["--scenarios", "nope"]])
def test_bad_list_values_are_refused(ran: list[Options], argv: list[str]) -> None:
    """A bad value is a usage error (exit 2) and nothing runs."""
    with pytest.raises(SystemExit) as exit_:
        main(["bench", *argv])
    assert exit_.value.code == 2 and ran == []
