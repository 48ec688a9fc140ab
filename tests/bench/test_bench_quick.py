"""``baton bench --quick`` end to end: it starts Baton and the ceiling, drives every scenario and reports every field.

What is checked is that the benchmark runs and reports, never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ops.bench import SCENARIOS
from ops.bench_probe import redis_delta

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
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"] is not None
    assert data["settings"]["generator"] in ("wrk", "builtin")
    for scenario in (*SCENARIOS, "verify+sign only"):
        assert scenario in stdout


def test_redis_round_trips_leave_out_what_the_rate_limit_script_runs() -> None:
    """Commands a Lua script issues (TIME, a GET and SET per bucket) are not round trips; INFO is not counted."""
    before = {"evalsha": 10, "time": 10, "get": 20, "set": 20, "info": 3}
    after = {"evalsha": 110, "time": 110, "get": 221, "set": 220, "info": 5}
    commands, trips = redis_delta(before, after, buckets=2)
    assert commands == 100 + 100 + 201 + 200
    assert trips == 100 + 1  # 100 EVALSHA and one GET of a cached key set
