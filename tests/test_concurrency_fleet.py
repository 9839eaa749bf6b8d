"""A fleet-wide concurrency cap on three real workers × 4 processes: counted by the tasks
themselves in the record Redis; leases renewed while tasks run and lapsing when a worker dies."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

import pytest
import redis
from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from fleetlib import module_fleet, records, wait_for

from taskthrottle import Outcome

pytestmark = pytest.mark.fleet

SECOND = 1_000_000


app = module_fleet(count=3, concurrency=4)


def test_never_more_than_3_running_and_all_done(app: Any, rec: redis.Redis,
                                                r: redis.Redis) -> None:
    results = [app.report_task.delay(i, 1.0) for i in range(30)]
    values = [result.get(timeout=120) for result in results]
    starts = records(rec, "starts:report")
    assert 30 == len(values) == len({s["id"] for s in starts}) == len(starts)
    assert max(s["running"] for s in starts) <= 3  # as the tasks themselves counted
    assert 3 == max(s["running"] for s in starts)  # and the cap was used
    assert {0} == {s["retries"] for s in starts}
    throttled = [t for t in records(rec, "throttled") if t["task"] == "fleet.report"]
    assert {"busy"} == {t["reason"] for t in throttled}
    assert len({round(t["countdown"], 3) for t in throttled}) > len(throttled) // 2  # jittered
    assert 0 == r.zcard(app.reports.redis_key() + ":c")  # every lease given back


def test_the_slot_is_free_by_the_time_the_result_arrives(app: Any, r: redis.Redis) -> None:
    """The lease goes back when the body returns, before Celery stores the result: a caller
    woken by the result never finds the slot still taken (task_postrun comes after it)."""
    for i in range(5):
        assert i == app.report_task.delay(i, 0.05).get(timeout=30)["i"]
        assert 0 == r.zcard(app.reports.redis_key() + ":c")


def test_renewal_keeps_the_slot_and_a_killed_worker_gives_it_back(
        app: Any, rec: redis.Redis, r: redis.Redis) -> None:
    lease = app.reports.lease  # 3 s
    results = [app.report_task.delay(i, 3.2 * lease) for i in range(3)]
    wait_for(lambda: rec.llen("starts:report") >= 3, 30, "three long tasks running")
    time.sleep(2.5 * lease)  # well past the lease: only renewal keeps the slots
    probe = app.reports.acquire(redis=r, lease="probe")
    assert Outcome.BUSY == probe.outcome
    assert 3 == r.zcard(app.reports.redis_key() + ":c")

    victim = next(s["hostname"] for s in records(rec, "starts:report"))
    app.workers.kill(app.workers.hostnames.index(victim), signal.SIGKILL)
    killed = time.monotonic()
    while not (probe := app.reports.acquire(redis=r, lease="probe")).granted:
        assert time.monotonic() - killed <= lease + 1, "the dead worker's slot did not lapse"
        time.sleep(0.05)
    assert time.monotonic() - killed <= lease + 1
    assert app.reports.release("probe", redis=r)
    host_of = {s["id"]: s["hostname"] for s in records(rec, "starts:report")}
    survivors = [result for result in results if host_of[result.id] != victim]
    for result in survivors:  # the others ran to the end, holding their slots
        assert result.get(timeout=30)["running"] <= 3
    assert Counter(host_of.values())[victim] >= 1


@pytest.mark.parametrize("how", ["fail", "retry"])
def test_a_lease_is_released_when_the_task_fails_or_retries(app: Any, rec: redis.Redis,
                                                           r: redis.Redis, how: str) -> None:
    result = app.report_ends.delay(how)
    if how == "fail":
        with pytest.raises(ValueError, match="boom"):
            result.get(timeout=30)
    else:
        assert "retry" == result.get(timeout=30)
    runs = records(rec, "starts:ends")
    assert (2 if how == "retry" else 1) == len(runs)
    assert all(1 == run["leases"] for run in runs)  # each run held exactly its own lease
    assert 0 == r.zcard(app.reports.redis_key() + ":c")  # released before the result was stored


def test_a_revoked_running_task_gives_its_lease_back(app: Any, rec: redis.Redis,
                                                     r: redis.Redis) -> None:
    result = app.report_ends.delay("sleep")
    wait_for(lambda: rec.llen("starts:ends") >= 1, 30, "the task running")
    assert 1 == r.zcard(app.reports.redis_key() + ":c")
    result.revoke(terminate=True, signal="SIGKILL")
    started = time.monotonic()
    wait_for(lambda: 0 == r.zcard(app.reports.redis_key() + ":c"), 5, "the lease released")
    assert time.monotonic() - started < app.reports.lease  # released, not lapsed


def test_a_pool_process_killed_under_its_task_gives_the_slot_back_at_once(
        app: Any, rec: redis.Redis, r: redis.Redis) -> None:
    """An OOM-killed (here SIGKILLed) pool process cannot release its slot; the worker's main
    process, which sees it die, does, before it records the loss."""
    result = app.report_ends.delay("sleep")
    wait_for(lambda: rec.llen("starts:ends") >= 1, 30, "the task running")
    assert 1 == r.zcard(app.reports.redis_key() + ":c")
    os.kill(records(rec, "starts:ends")[-1]["pid"], signal.SIGKILL)
    # No decision runs meanwhile, so a lapsed lease would stay in the set: only a release
    # empties it. (The main process notices the death within ms, or seconds when busy.)
    wait_for(lambda: 0 == r.zcard(app.reports.redis_key() + ":c"), 10, "the slot given back")
    with pytest.raises(WorkerLostError):
        result.get(timeout=10)



def test_a_task_killed_at_its_hard_time_limit_gives_the_slot_back_at_once(
        app: Any, rec: redis.Redis, r: redis.Redis) -> None:
    result = app.report_overtime.delay()
    wait_for(lambda: rec.llen("starts:overtime") >= 1, 30, "the task running")
    # Only a release empties the set (no decision runs to trim a lapsed lease).
    wait_for(lambda: 0 == r.zcard(app.reports.redis_key() + ":c"), 10, "the slot given back")
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=10)


def test_a_retry_keeps_its_slot_while_the_run_that_sent_it_cleans_up(
        app: Any, rec: redis.Redis, r: redis.Redis) -> None:
    """``self.retry(countdown=0)``: the retry (same task id) may start before the first run has
    ended; the first run gives its slot back when it sends the retry, so its end cannot free
    the slot the retry took."""
    assert app.report_retry.delay().get(timeout=30) is True
    assert 0 == r.zcard(app.reports.redis_key() + ":c")
