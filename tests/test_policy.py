"""The failure policy, under a store that goes down (SIGTERM) or hangs (SIGSTOP) mid-run: no
task is lost or run twice, each policy does what it says, and the fleet recovers by itself."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
import redis
from fleetlib import fleet, records, wait_for

from taskthrottle._procs import RedisServer

pytestmark = pytest.mark.fleet

SECOND = 1_000_000


def now_us(rec: redis.Redis) -> int:
    seconds, micros = rec.time()
    return seconds * SECOND + micros


@pytest.mark.parametrize("outage", ["down", "hang"])
@pytest.mark.parametrize("policy", ["defer", "allow", "raise"])
def test_policy_under_an_outage(server: RedisServer, rec: redis.Redis, policy: str,
                                outage: str) -> None:
    settings = {"taskthrottle_on_backend_error": policy, "taskthrottle_socket_timeout": 0.5,
                "taskthrottle_backoff": 0.5, "taskthrottle_backoff_max": 1.0}
    with RedisServer() as store, fleet(server.url(1), store.url(0), server.url(2), count=2,
                                       concurrency=2, settings=settings) as app:
        results = [app.main_task.delay(i) for i in range(30)]
        wait_for(lambda: rec.llen("starts:main") >= 5, 30, "the first starts")
        began = now_us(rec)
        if outage == "down":
            store.stop()
        else:
            store.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        time.sleep(2.5)
        ended = now_us(rec)
        if outage == "down":
            store.start()
        else:
            store.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        outcomes = []
        for result in results:
            try:
                outcomes.append(("SUCCESS", result.get(timeout=90)))
            except Exception as exc:  # the raise policy fails tasks on purpose
                outcomes.append((type(exc).__name__, None))
        after = [app.main_task.delay(100 + i) for i in range(3)]  # recovered by itself
        assert [100, 101, 102] == [result.get(timeout=60)["i"] for result in after]

    starts = records(rec, "starts:main")
    ran = Counter(s["id"] for s in starts)
    assert all(1 == n for n in ran.values())  # nothing ran twice
    states = Counter(state for state, _ in outcomes)
    during = [s for s in starts if began + 350_000 < s["at"] < ended]  # past the inline wait
    unthrottled = records(rec, "unthrottled")
    if policy == "defer":
        assert {"SUCCESS": 30} == states  # nothing lost, nothing failed
        assert [] == during  # and nothing ran while the store was away
        assert [] == unthrottled
    elif policy == "allow":
        assert {"SUCCESS": 30} == states
        assert during, "allow: tasks run while the store is away"
        assert len(unthrottled) >= len(during)  # each of them signalled (and counted)
    else:
        assert {"SUCCESS", "BackendError"} == set(states), states
        assert 30 == sum(states.values())
        assert [] == during
        failed = {r.id for r, (state, _) in zip(results, outcomes, strict=True)
                  if state == "BackendError"}
        assert failed.isdisjoint(ran)  # a failed task did not run
        assert {r.id for r in results} == failed | (set(ran) - {r.id for r in after})
