"""The limits beyond one bucket, on three real workers × 2 processes, measured on one clock
(the record Redis's TIME)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from fleetlib import module_fleet, records, wait_for

from taskthrottle._procs import RedisServer
from taskthrottle.cli import main as cli
from taskthrottle.testing import max_in_window

pytestmark = pytest.mark.fleet

SECOND = 1_000_000


app = module_fleet(count=3, concurrency=2)


def run_all(results: list[Any], timeout: float) -> None:
    for result in results:
        result.get(timeout=timeout)


def test_two_limits_on_one_throttle_both_hold(app: Any, rec: redis.Redis) -> None:
    """10/s and an exact 30/5s: 100 tasks; neither bound is broken on the one clock."""
    run_all([app.multi_task.delay(i) for i in range(100)], timeout=90)
    starts = records(rec, "starts:multi")
    times = [s["at"] for s in starts]
    assert 100 == len({s["id"] for s in starts}) == len(starts)
    assert max_in_window(times, SECOND) <= 11  # burst 1 + 10/s
    assert max_in_window(times, 5 * SECOND - 1) <= 30  # exact: 30 in any 5 s
    # and the window really bound: 100 tasks at 30 per 5 s need more than 15 s
    assert max(times) - min(times) >= 15 * SECOND
    assert {0} == {s["retries"] for s in starts}


def test_an_exact_window_holds_for_a_burst_enqueued_at_once(app: Any, rec: redis.Redis) -> None:
    run_all([app.window_task.delay(i) for i in range(60)], timeout=90)
    starts = records(rec, "starts:window")
    times = [s["at"] for s in starts]
    assert 60 == len({s["id"] for s in starts}) == len(starts)
    assert max_in_window(times, 10 * SECOND - 1) <= 20  # never more than 20 in any 10 s
    assert max(times) - min(times) >= 20 * SECOND  # 60 tasks: three windows


def test_a_quiet_tenant_is_not_stuck_behind_a_flood(app: Any, rec: redis.Redis) -> None:
    """tenant limit 20/s per key, vendor limit 30/s for all: 200 of one tenant, then 5 of
    another; the quiet tenant's 5 start within their own limit's time."""
    flood = [app.tenant_task.delay(i, tenant="loud") for i in range(200)]
    seconds, micros = rec.time()
    enqueued = seconds * SECOND + micros
    quiet = [app.tenant_task.delay(i, tenant="quiet") for i in range(5)]
    run_all(quiet + flood, timeout=120)
    starts = records(rec, "starts:tenant")
    by_tenant = {name: sorted(s["at"] for s in starts if s["tenant"] == name)
                 for name in ("loud", "quiet")}
    assert 205 == len({s["id"] for s in starts}) == len(starts)
    # 5 at 20/s take 0.2 s, but they wait in the broker's queue behind the flood's 200
    # messages, each decided (and deferred) once first: seconds on this 2-core machine.
    assert by_tenant["quiet"][-1] - enqueued <= 6 * SECOND, by_tenant["quiet"]
    assert by_tenant["quiet"][-1] < by_tenant["loud"][100]  # not behind the flood
    assert by_tenant["loud"][-1] - enqueued >= 9 * SECOND  # which is paced at 20/s
    assert max_in_window(by_tenant["loud"], SECOND) <= 21  # each tenant's bound
    assert max_in_window([s["at"] for s in starts], SECOND) <= 31  # and the vendor's


def test_a_429_pauses_the_throttle_for_every_worker(app: Any, rec: redis.Redis) -> None:
    results = [app.call_vendor.delay(i) for i in range(20)]
    run_all(results, timeout=60)
    calls = sorted(s["at"] for s in records(rec, "starts:vendor"))
    said_429 = int(rec.get("vendor:said-429"))  # type: ignore[arg-type]
    after = [t for t in calls if t > said_429]
    assert 21 == len(calls)  # the 429'd task was deferred past the pause and ran again
    assert 20 == len({s["id"] for s in records(rec, "starts:vendor")})
    assert after
    assert min(after) >= said_429 + 2 * SECOND  # nobody called the vendor for 2 s
    assert max_in_window(after, SECOND) <= 11  # then the rate resumed at 10/s
    assert "SUCCESS" == results[0].state or all(r.state == "SUCCESS" for r in results)
    reasons = Counter(t["reason"] for t in records(rec, "throttled")
                      if t["task"] == "fleet.call_vendor")
    assert reasons["paused"] >= 1, reasons


def test_an_override_from_the_cli_changes_the_rate_within_a_second(
        app: Any, rec: redis.Redis, server: RedisServer) -> None:
    results = [app.tunable_task.delay(i) for i in range(90)]
    wait_for(lambda: rec.llen("starts:tunable") >= 25, 30, "the first starts at 20/s")
    outcome = CliRunner().invoke(cli, ["set", "fleet-tunable", "4/s",
                                       "--redis-url", server.url(0)])
    seconds, micros = rec.time()
    changed = seconds * SECOND + micros
    assert 0 == outcome.exit_code, outcome.output
    try:
        wait_for(lambda: rec.llen("starts:tunable") >= 50, 30, "starts under the override")
    finally:
        unset = CliRunner().invoke(cli, ["unset", "fleet-tunable", "--redis-url",
                                         server.url(0)])
        assert 0 == unset.exit_code, unset.output
    run_all(results, timeout=60)
    times = sorted(s["at"] for s in records(rec, "starts:tunable"))
    before = [t for t in times if t < changed]
    under = [t for t in times if changed + SECOND <= t]
    assert max_in_window(before, SECOND) >= 12  # it really ran at 20/s before
    assert len(under) >= 10
    # from one second after the override to its removal: 4/s (burst 1)
    window = [t for t in under if t <= under[0] + 3 * SECOND]
    assert max_in_window(window, SECOND) <= 5, window
