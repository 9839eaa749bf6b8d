"""The Redis broker's rules for an ``acks_late`` task whose worker is SIGKILLed: the message
stays unacknowledged and a worker started after ``visibility_timeout`` restores and runs it;
the concurrency lease is taken over, not leaked, and nothing is lost."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from fleetlib import TESTS, fleet, records, wait_for

from taskthrottle._procs import RedisServer, WorkerFleet

pytestmark = pytest.mark.fleet


def test_acks_late_task_of_a_killed_worker_comes_back_after_visibility_timeout(
        server: RedisServer, rec: redis.Redis, r: redis.Redis) -> None:
    server.client(1).flushdb()
    settings = {"broker_transport_options": {"visibility_timeout": 6},
                "taskthrottle_max_delay": 4}  # below the visibility timeout, as required
    with fleet(server.url(1), server.url(0), server.url(2), count=1, concurrency=2,
               settings=settings) as app:
        result = app.report_late.delay(3.0)
        wait_for(lambda: rec.llen("starts:late") >= 1, 30, "the task running")
        app.workers.kill(0, signal.SIGKILL)
        time.sleep(7)  # past the visibility timeout
        env = {k: v for k, v in os.environ.items() if k.startswith("FLEET_")}
        env["PYTHONPATH"] = TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")
        with WorkerFleet("fleet_app", count=1, concurrency=2, env=env, cwd=TESTS,
                         queues=[app.app.conf.task_default_queue], name="restarted") as again:
            again.wait_ready(app.app)
            value = result.get(timeout=60)
        runs = records(rec, "starts:late")
    assert value["id"] == result.id
    assert ["worker1@localhost", "restarted1@localhost"] == [run["hostname"] for run in runs]
    assert [1, 1] == [run["leases"] for run in runs]  # the lease was taken over, not doubled
    assert 0 == r.zcard(app.reports.redis_key() + ":c")  # and given back at the end
