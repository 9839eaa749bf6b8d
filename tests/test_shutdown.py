"""A worker stopped cold: the main process gives back the concurrency slots of the tasks its
pool processes were running (the warm path, where tasks end and release them, is everywhere
else). Its own fleet, since it stops its only worker."""

from __future__ import annotations

import signal

import pytest
import redis
from fleetlib import fleet, wait_for

from taskthrottle._procs import RedisServer

pytestmark = pytest.mark.fleet


def test_a_cold_shutdown_gives_the_running_tasks_slots_back(
        server: RedisServer, rec: redis.Redis, r: redis.Redis) -> None:
    """SIGQUIT (cold shutdown) kills the pool processes under their tasks; the main process
    gives their slots back before it exits, not when the leases lapse."""
    server.client(1).flushdb()
    with fleet(server.url(1), server.url(0), server.url(2), count=1, concurrency=2) as app:
        for _ in range(2):
            app.report_ends.delay("sleep")
        wait_for(lambda: rec.llen("starts:ends") >= 2, 30, "both tasks running")
        assert 2 == r.zcard(app.reports.redis_key() + ":c")
        app.workers.processes[0].send_signal(signal.SIGQUIT)
        app.workers.processes[0].wait(10)
        assert 0 == r.zcard(app.reports.redis_key() + ":c")
