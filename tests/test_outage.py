"""The throttle store goes away mid-run: tasks are deferred, never failed, never run
unthrottled, and all of them run exactly once after it comes back."""

from __future__ import annotations

import gc
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import redis
from fleetlib import TESTS, fleet, records, wait_for

from taskthrottle._procs import RedisServer, free_port
from taskthrottle.testing import max_in_window

pytestmark = pytest.mark.fleet


def test_store_stopped_mid_run(server: RedisServer, rec: redis.Redis) -> None:
    with RedisServer() as store, fleet(server.url(1), store.url(0), server.url(2), count=2,
                                       concurrency=2) as app:
        results = [app.main_task.delay(i) for i in range(30)]
        wait_for(lambda: rec.llen("starts:main") >= 5, 30, "the first starts")
        store.stop()
        seconds, micros = rec.time()
        stopped = seconds * 1_000_000 + micros
        time.sleep(3)
        seconds, micros = rec.time()
        restarted = seconds * 1_000_000 + micros
        store.start()
        values = [result.get(timeout=90) for result in results]
        states = {result.state for result in results}

    starts = records(rec, "starts:main")
    throttled = records(rec, "throttled")
    assert {"SUCCESS"} == states
    assert 30 == len(values)
    assert [1] * 30 == list(Counter(s["id"] for s in starts).values())
    assert {r.id for r in results} == {s["id"] for s in starts}
    # nothing was admitted while the store was down: a task admitted just before the stop
    # may still be sleeping out its inline wait (0.25 s), nothing starts after that
    late = [s["at"] for s in starts if stopped + 350_000 < s["at"] < restarted]
    assert [] == late
    assert any(t["reason"] == "backend" for t in throttled)
    for t in throttled:
        assert 0 < t["countdown"] <= t["max_delay"]
    # A restarted Redis without persistence forgets the bucket: at most one extra burst (1)
    # on top of burst 1 + 10/s × 1 s can slip through around the restart.
    assert max_in_window([s["at"] for s in starts], 1_000_000) <= 12


def test_no_redis_at_all_defers_without_losing(server: RedisServer, rec: redis.Redis) -> None:
    """A store that never answers: tasks stay deferred (none fail, none run)."""
    dead = RedisServer()  # never started: connection refused
    with fleet(server.url(1), dead.url(0), server.url(2), count=1, concurrency=2) as app:
        results = [app.main_task.delay(i) for i in range(4)]
        wait_for(lambda: sum(1 for t in records(rec, "throttled")
                             if t["reason"] == "backend") >= 8, 30, "backend deferrals")
        assert {"PENDING"} == {result.state for result in results}
        assert 0 == rec.llen("starts:main")
        dead.start()
        try:
            values = [result.get(timeout=90) for result in results]
        finally:
            dead.stop()
    assert 4 == len(values)
    assert 4 == len({s["id"] for s in records(rec, "starts:main")})


def test_a_misconfigured_worker_hands_tasks_back(server: RedisServer, rec: redis.Redis) -> None:
    """Bad settings (max_delay above the broker's visibility timeout) fail no task: the
    worker says so at start-up and defers what it receives."""
    with fleet(server.url(1), server.url(0), server.url(2), count=1, concurrency=1,
               max_delay=4000) as app:
        result = app.main_task.delay(1)
        wait_for(lambda: rec.llen("throttled") >= 1, 30, "the deferral")
        assert "PENDING" == result.state
        log = app.workers.logs()
        del result  # it never finishes: stop listening for it while the backend is up
        gc.collect()
    assert [("fleet.main", "misconfigured")] == [
        (t["task"], t["reason"]) for t in records(rec, "throttled")]
    assert 0 == rec.llen("starts:main")
    assert "taskthrottle: setting taskthrottle_max_delay: 4000.0 s is not below" in log


def test_a_stalled_worker_does_not_start_bunched(server: RedisServer, rec: redis.Redis) -> None:
    """SIGSTOP one worker (all its processes) twice mid-run: the tasks it froze between their
    admission and their start, and the ETA tasks it held, must not start together on SIGCONT."""
    with fleet(server.url(1), server.url(0), server.url(2), count=2, concurrency=4) as app:
        results = [app.stall_task.delay(i) for i in range(100)]
        for _ in range(2):
            wait_for(lambda: rec.llen("starts:stall") >= 20, 30, "a running backlog")
            app.workers.kill(0, signal.SIGSTOP)
            time.sleep(2)
            app.workers.kill(0, signal.SIGCONT)
            time.sleep(1)
        values = [result.get(timeout=60) for result in results]
    seen = sorted(records(rec, "starts:stall"), key=lambda s: s["at"])
    starts = [s["at"] for s in seen]
    gaps = [(b["at"] - a["at"], a["hostname"], b["hostname"], b["deferrals"])
            for a, b in itertools.pairwise(seen) if b["at"] - a["at"] < 50_000]
    assert 100 == len(values) == len(starts)
    assert max_in_window(starts, 1_000_000) <= 21, gaps  # burst 1 + 20/s × 1 s
    assert max_in_window(starts, 100_000) <= 3, gaps  # burst 1 + 20/s × 0.1 s


def test_a_distant_store_is_not_a_stall(server: RedisServer, rec: redis.Redis) -> None:
    """A store 30 ms away (each way) at 100/s: the round trip is not taken for a stall, so
    tasks are admitted and not handed back again and again."""
    port = free_port()
    proxy = subprocess.Popen([sys.executable, os.path.join(TESTS, "delay_proxy.py"), str(port),
                              str(server.port), "0.015"])
    try:
        with fleet(server.url(1), f"redis://127.0.0.1:{port}/0", server.url(2), count=2,
                   concurrency=3) as app:
            results = [app.fast_task.delay(i) for i in range(40)]
            values = [result.get(timeout=60) for result in results]
    finally:
        proxy.kill()
        proxy.wait()
    reasons = Counter(t["reason"] for t in records(rec, "throttled"))
    assert 40 == len(values)
    assert 0 == reasons["stalled"], reasons
    # Starts lag their admissions by the reply's trip from the store; the proxy's jitter in
    # that trip (a few ms against a 10 ms interval) may move one start into a window.
    assert max_in_window([s["at"] for s in records(rec, "starts:fast")], 100_000) <= 11 + 1
