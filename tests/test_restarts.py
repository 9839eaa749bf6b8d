"""SCRIPT FLUSH and a Redis restart in the middle of a run: no task fails (the script reloads)
and the bound holds across the restart when Redis persists; without persistence the loss is
bounded (see the README's production notes)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis
from fleetlib import fleet, records, wait_for

from taskthrottle._procs import RedisServer
from taskthrottle.testing import max_in_window

pytestmark = pytest.mark.fleet

SECOND = 1_000_000


def run(store: RedisServer, server: RedisServer, rec: redis.Redis, disrupt: str) -> list[int]:
    with fleet(server.url(1), store.url(0), server.url(2), count=2, concurrency=2,
               settings={"taskthrottle_backoff": 0.2, "taskthrottle_backoff_max": 0.5}) as app:
        results = [app.main_task.delay(i) for i in range(40)]
        wait_for(lambda: rec.llen("starts:main") >= 10, 30, "the first starts")
        if disrupt == "flush":
            store.client(0).script_flush()
        else:
            store.stop()  # SIGTERM: a persisting Redis writes its data first
            time.sleep(0.5)
            store.start()
        values = [result.get(timeout=90) for result in results]
    assert 40 == len(values)
    assert {"SUCCESS"} == {result.state for result in results}
    starts = records(rec, "starts:main")
    assert [1] * 40 == list(Counter(s["id"] for s in starts).values())
    return [s["at"] for s in starts]


def test_script_flush_mid_run_is_invisible(server: RedisServer, rec: redis.Redis) -> None:
    with RedisServer() as store:
        times = run(store, server, rec, "flush")
    assert max_in_window(times, SECOND) <= 11
    assert not any(t["reason"] == "backend" for t in records(rec, "throttled"))


def test_a_restart_of_a_persisting_redis_keeps_the_bound(server: RedisServer,
                                                         rec: redis.Redis) -> None:
    with RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as store:
        times = run(store, server, rec, "restart")
    assert max_in_window(times, SECOND) <= 11  # the buckets came back with Redis


def test_a_restart_without_persistence_lets_at_most_one_burst_through(
        server: RedisServer, rec: redis.Redis) -> None:
    with RedisServer() as store:
        times = run(store, server, rec, "restart")
    # the bucket is forgotten: one burst (1) plus what the inline window had admitted
    assert max_in_window(times, SECOND) <= 11 + 1 + 3
