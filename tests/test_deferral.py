"""A deferred task is the same task: id, arguments, headers, chain, chord, links, retries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from celery import chain, chord
from fleetlib import fleet, records, wait_for

from taskthrottle._procs import RedisServer

pytestmark = pytest.mark.fleet

MAX_DELAY = 1.0  # small, so that a 5 s wait travels in hops


@pytest.fixture(scope="module")
def app(server: RedisServer) -> Iterator[Any]:
    with fleet(server.url(1), server.url(0), server.url(2), count=2, concurrency=1,
               max_delay=MAX_DELAY, extra_queues=1) as fleet_app:
        yield fleet_app



def backlog(app: Any, r: redis.Redis, slots: int = 2) -> None:
    """Take the burst and reserve ``slots`` more, so the next tasks must be deferred."""
    for _ in range(slots + 1):
        app.slow.acquire(redis=r, reserve=True, max_delay=MAX_DELAY)


def test_id_arguments_and_headers_survive(app: Any, r: redis.Redis, rec: redis.Redis) -> None:
    backlog(app, r)
    results = [app.echo.apply_async((i,), {"tag": f"t{i}"}, headers={"x-trace": f"trace-{i}"})
               for i in range(3)]
    values = [result.get(timeout=30) for result in results]
    assert [0, 1, 2] == [v["x"] for v in values]
    assert ["t0", "t1", "t2"] == [v["tag"] for v in values]
    assert [result.id for result in results] == [v["id"] for v in values]
    assert [{"x-trace": f"trace-{i}"} for i in range(3)] == [v["headers"] for v in values]
    assert [0, 0, 0] == [v["retries"] for v in values]
    assert all(v["deferrals"] >= 1 for v in values)


def test_routing_priority_expiry_and_time_limits_survive(app: Any, r: redis.Redis,
                                                         rec: redis.Redis) -> None:
    backlog(app, r)
    other = app.queues[1]  # not the default queue: a lost route would land on the default
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=2)
    results = [app.echo.apply_async((i,), queue=other, priority=3, expires=expires,
                                    time_limit=30, soft_time_limit=20) for i in range(3)]
    values = [result.get(timeout=30) for result in results]
    assert all(v["deferrals"] >= 1 for v in values[1:])
    assert [other] * 3 == [v["routing_key"] for v in values]
    assert [3] * 3 == [v["priority"] for v in values]
    assert [[30, 20]] * 3 == [v["timelimit"] for v in values]
    assert [expires] * 3 == [datetime.fromisoformat(v["expires"]) for v in values]


def test_an_expired_deferred_task_is_revoked_not_run(app: Any, r: redis.Redis,
                                                     rec: redis.Redis) -> None:
    backlog(app, r, slots=4)  # the next slot is ~1 s away
    result = app.echo.apply_async(("late",), expires=0.5)
    wait_for(lambda: result.state == "REVOKED", 30, "the expired task to be revoked")
    assert [] == [s for s in records(rec, "starts:echo") if s["x"] == "late"]


def test_chain_runs_in_order_through_deferrals(app: Any, r: redis.Redis,
                                               rec: redis.Redis) -> None:
    backlog(app, r)
    result = chain(app.add.s(1, 2), app.add.s(3), app.add.s(4)).apply_async()
    assert 10 == result.get(timeout=30)
    starts = records(rec, "starts:add")
    assert [(1, 2), (3, 3), (6, 4)] == [(s["x"], s["y"]) for s in starts]
    assert starts[0]["deferrals"] >= 1


def test_chord_callback_runs_once_with_every_result(app: Any, r: redis.Redis,
                                                    rec: redis.Redis) -> None:
    backlog(app, r)
    result = chord([app.add.s(i, i) for i in range(4)], app.collect.s()).apply_async()
    assert [0, 2, 4, 6] == sorted(result.get(timeout=30))
    starts = records(rec, "starts:add")
    assert 4 == len(starts)
    assert sum(s["deferrals"] for s in starts) >= 3
    time.sleep(1.0)  # a second callback, were there one, would have come by now
    assert 1 == len(records(rec, "calls:collect"))


def test_link_and_link_error_fire_once(app: Any, r: redis.Redis, rec: redis.Redis) -> None:
    backlog(app, r)
    ok = app.add.apply_async((2, 3), link=app.on_success.s())
    bad = app.fail.apply_async(link_error=app.on_error.s())
    assert 5 == ok.get(timeout=30)
    with pytest.raises(ValueError, match="boom"):
        bad.get(timeout=30)
    wait_for(lambda: rec.llen("calls:on_success") and rec.llen("calls:on_error"), 10,
             "the link and the errback")
    time.sleep(1.0)
    assert [5] == records(rec, "calls:on_success")
    assert [(bad.id, "ValueError")] == records(rec, "calls:on_error")
    assert 1 == len(records(rec, "starts:fail"))  # our deferral is not the task's failure


def test_a_retry_does_not_carry_the_old_reservation(app: Any, r: redis.Redis,
                                                    rec: redis.Redis) -> None:
    backlog(app, r)
    assert 1 == app.flaky.delay().get(timeout=30)["retries"]
    first, second = records(rec, "starts:flaky")
    assert (0, 1) == (first["retries"], second["retries"])
    assert first["slot"] is not None  # the first delivery started on a reservation
    assert first["slot"] != second["slot"]  # the retry asked afresh
    # but it carries the deferral count on (a hand-off record of an earlier delivery never
    # matches a retry whose process dies)
    assert second["deferrals"] >= first["deferrals"] >= 1


def test_many_deferrals_leave_retries_alone(app: Any, r: redis.Redis, rec: redis.Redis) -> None:
    app.hops.acquire(redis=r)  # take the token: the next one is 5 s away, past max_delay
    app.hops_too.acquire(redis=r)
    plain = app.hop.delay()
    strict = app.hop_no_retries.delay()  # max_retries=0: deferrals must not count as retries
    values = [plain.get(timeout=30), strict.get(timeout=30)]
    assert [0, 0] == [v["retries"] for v in values]
    assert all(v["deferrals"] >= 5 for v in values)
    hops = [t for t in records(rec, "throttled") if t["task"].startswith("fleet.hop")]
    horizon = [t for t in hops if t["reason"] == "horizon"]
    assert len(horizon) >= 8  # at least four hops each
    for t in horizon:
        assert 0.9 * MAX_DELAY <= t["countdown"] <= MAX_DELAY < t["wait"]
    for t in hops:
        assert 0 < t["countdown"] <= MAX_DELAY


@pytest.mark.parametrize("name", ["handoff_early", "handoff_late"])
def test_a_process_dying_right_after_deferring_leaves_the_task_to_its_copy(
        app: Any, rec: redis.Redis, name: str) -> None:
    """The pool process is SIGKILLed after publishing a task's deferral, before its delivery
    ended: the task runs once (``acks_late``: the original is not requeued beside the copy)
    and never fails on the way (no errback for a task that still runs)."""
    task = getattr(app, name)
    results = [task.apply_async((i,), link_error=app.errback.s()) for i in range(2)]
    wait_for(lambda: rec.llen(f"starts:{name}") >= 2, 30, "both tasks run")
    time.sleep(2.0)  # a second run of the original, or an errback, would show by now
    runs = records(rec, f"starts:{name}")
    killed = [task_id.decode() for task_id in rec.lrange("killed-after-deferring", 0, -1)]
    assert killed  # one was deferred and its process killed
    # once each: no requeued original beside the copy (it would be deferred, and killed, again)
    assert len(set(killed)) == len(killed)
    assert sorted(run["i"] for run in runs) == [0, 1]
    assert [] == records(rec, "errbacks")
    assert {"SUCCESS"} == {result.state for result in results}
