"""Ratios to the ceiling: against the mean of the ceiling runs either side of a scenario, so drift cancels."""

from __future__ import annotations

from ops.bench import Row, _mean_ceiling, _ratios


def _row(backend: str, rate: float, cpu: float, p50: float = 10.0) -> Row:
    return Row(backend=backend, scenario="impersonation", connections=32, exchanges_per_s=rate, p50_ms=p50,
               p95_ms=p50 * 2, p99_ms=p50 * 3, requests=int(rate), errors=0, statuses={"200": int(rate)},
               server_cpu_cores=1.8, cpu_us_per_exchange=cpu, worker_cpu_cores=None, db_tx_per_exchange=None,
               db_tx_source=None, redis_round_trips_per_exchange=None, redis_commands_per_exchange=None,
               generator="wrk")


def test_the_mean_ceiling_averages_rates_latencies_and_cpu_and_sums_counts() -> None:
    before, after = {32: _row("ceiling", 4000, 400, p50=8.0)}, {32: _row("ceiling", 3000, 600, p50=12.0)}
    mean = _mean_ceiling([before, after])[32]
    assert (mean.exchanges_per_s, mean.cpu_us_per_exchange, mean.p50_ms) == (3500, 500, 10.0)
    assert mean.requests == 7000 and mean.statuses == {"200": 7000}


def test_a_scenario_is_compared_with_the_ceilings_either_side_of_it() -> None:
    first, second, third = ({32: _row("ceiling", rate, 500)} for rate in (4000, 3000, 2000))
    early, late = _row("embedded", 1750, 700), _row("postgres+redis", 1250, 800)
    _ratios([early], _mean_ceiling([first, second]))
    _ratios([late], _mean_ceiling([second, third]))
    assert early.ratio_to_ceiling["exchanges_per_s"] == 0.5 and late.ratio_to_ceiling["exchanges_per_s"] == 0.5
    assert early.ratio_to_ceiling["cpu_us_per_exchange"] == 1.4
