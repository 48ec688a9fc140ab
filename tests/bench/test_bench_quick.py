"""``baton bench --quick`` end to end: it starts Baton and the ceiling, drives every scenario and reports every field.

What is checked is that the benchmark runs and reports, never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ops.bench import SCENARIOS
from ops.bench_probe import counter, per_worker_delta, redis_commands

ROW_FIELDS = {
    "backend", "scenario", "connections", "exchanges_per_s", "p50_ms", "p95_ms", "p99_ms", "requests", "errors",
    "statuses", "server_cpu_cores", "cpu_us_per_exchange", "worker_cpu_cores", "db_tx_per_exchange",
    "redis_round_trips_per_exchange", "redis_commands_per_exchange", "generator", "key_cache_hit_rate", "ratio_to_ceiling",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    elsewhere = tmp_path_factory.mktemp("bench")
    out = elsewhere / "report.json"
    # run outside the checkout, as a user's installed ``baton`` does: the benchmark must not need tests/
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "bench", "--quick", "--duration", "1", "--json", str(out)],
        cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_every_scenario_is_measured_with_every_field(report: tuple[dict, str]) -> None:
    """Each scenario gets a row on the embedded backend holding every reported figure, with no failed request."""
    data, _ = report
    rows = {r["scenario"]: r for r in data["results"] if r["backend"] == "embedded"}
    assert set(rows) == set(SCENARIOS)
    for scenario, row in rows.items():
        assert ROW_FIELDS <= set(row), scenario
        assert row["requests"] > 0 and row["exchanges_per_s"] > 0, scenario
        assert row["errors"] == 0, (scenario, row["statuses"])
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"], scenario
        assert row["server_cpu_cores"] > 0 and row["cpu_us_per_exchange"] > 0, scenario
        assert row["db_tx_per_exchange"] is not None, scenario
        assert row["redis_round_trips_per_exchange"] is None, scenario  # the embedded backend has no Redis
        assert set(row["ratio_to_ceiling"]) == {"exchanges_per_s", "p50_ms", "p99_ms", "cpu_us_per_exchange"}
    assert rows["denial"]["statuses"].keys() == {"400"}


def test_ceiling_machine_and_table_are_reported(report: tuple[dict, str]) -> None:
    """The ceiling is measured in the same run, the machine is described, and the table lists every row."""
    data, stdout = report
    assert data["ceiling"]["32"]["exchanges_per_s"] > 0
    # measured before the first scenario and after each; the reported ceiling is the mean of them all
    runs = [run["32"] for run in data["ceiling_runs"]]
    assert len(runs) == len(SCENARIOS) + 1 and all(rate > 0 for rate in runs)
    assert abs(data["ceiling"]["32"]["exchanges_per_s"] - sum(runs) / len(runs)) < 1e-6
    assert "ceiling at c=32, before the first scenario and after each:" in stdout
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"] is not None
    assert data["settings"]["generator"] in ("wrk", "builtin")
    for scenario in (*SCENARIOS, "verify+sign only"):
        assert scenario in stdout


def test_each_scenario_is_compared_with_the_ceilings_either_side_of_it(report: tuple[dict, str]) -> None:
    """The n-th scenario's ratio is its rate over the mean of the n-th and (n+1)-th ceiling measurements."""
    data, _ = report
    runs = [run["32"] for run in data["ceiling_runs"]]
    rows = [r for r in data["results"] if r["backend"] == "embedded"]
    assert [r["scenario"] for r in rows] == list(SCENARIOS)
    for n, row in enumerate(rows):
        expected = row["exchanges_per_s"] / ((runs[n] + runs[n + 1]) / 2)
        assert abs(row["ratio_to_ceiling"]["exchanges_per_s"] - expected) <= 0.0015, (row["scenario"], runs)


def test_redis_commands_count_everything_but_the_probe() -> None:
    """Commands run inside the rate-limit script count as Redis work; the probe's own INFO does not."""
    before = {"evalsha": 10, "time": 10, "mget": 10, "set": 20, "info": 3}
    after = {"evalsha": 30, "time": 30, "mget": 30, "set": 61, "info": 5}
    assert redis_commands(before, after) == 20 + 20 + 20 + 41


def test_round_trips_are_counted_per_worker_and_summed() -> None:
    """Two workers, each scraped before and after: deltas of the same process are summed, a worker seen once is left out."""
    def text(pid: int, calls: float, served: float) -> str:
        return (f"baton_process_id {pid}.0\nbaton_redis_calls_total {calls}\n"
                f'baton_request_duration_seconds_count{{endpoint="/token"}} {served}\n'
                f'baton_request_duration_seconds_count{{endpoint="/introspect"}} 7.0\n')
    before = {1: text(1, 10, 100), 2: text(2, 5, 50), 3: text(3, 0, 0)}
    after = {1: text(1, 30, 300), 2: text(2, 15, 130)}
    assert counter(after[1], "baton_request_duration_seconds_count", 'endpoint="/token"') == 300
    assert per_worker_delta(before, after, "baton_redis_calls_total") == 20 + 10
    assert per_worker_delta(before, after, "baton_request_duration_seconds_count", 'endpoint="/token"') == 200 + 80
