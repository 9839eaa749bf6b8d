"""Worker clocks 10 s fast and 10 s slow (libfaketime): the bound holds on the one clock (the
record Redis), and deliveries that come early by the Redis clock are detected and deferred."""

from __future__ import annotations

import datetime
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import redis
from fleetlib import TESTS, records

from taskthrottle._procs import RedisServer, WorkerFleet
from taskthrottle.task import HEADER_SLOT
from taskthrottle.testing import max_in_window

pytestmark = pytest.mark.fleet

SECOND = 1_000_000
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def libfaketime() -> str:
    for path in (LIBFAKETIME, "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/faketime/libfaketime.so.1"):
        if os.path.exists(path):
            return path
    pytest.fail("libfaketime is needed: apt-get install faketime (.ci/run does)")


@contextmanager
def skewed_fleet(server: RedisServer, offsets: list[str]) -> Iterator[Any]:
    """One worker per offset (``"+10s"``, ``"-10s"``), all on one queue."""
    queue = f"skew-{uuid.uuid4().hex[:8]}"
    env = {"FLEET_BROKER": server.url(1), "FLEET_STORE": server.url(0),
           "FLEET_RECORD": server.url(2), "FLEET_QUEUE": queue, "FLEET_MAX_DELAY": "300",
           "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    os.environ.update(env)
    import fleet_app

    fleet_app.app.conf.update(task_default_queue=queue, broker_url=server.url(1),
                              result_backend=server.url(1),
                              taskthrottle_redis_url=server.url(0))
    fleet_app.app._after_fork()
    fleet_app._record = None
    with ExitStack() as stack:
        for i, offset in enumerate(offsets):
            workers = WorkerFleet("fleet_app", count=1, concurrency=2, queues=[queue],
                                  cwd=TESTS, name=f"skew{i}-",
                                  env={**env, "LD_PRELOAD": libfaketime(), "FAKETIME": offset,
                                       "FAKETIME_DONT_RESET": "1"})
            stack.enter_context(workers)
            workers.wait_ready(fleet_app.app)
        yield fleet_app


def test_the_bound_holds_with_clocks_10_s_apart(server: RedisServer, rec: redis.Redis) -> None:
    assert shutil.which("redis-server")
    server.client(1).flushdb()
    with skewed_fleet(server, ["+10s", "-10s"]) as app:
        results = [app.main_task.delay(i) for i in range(20)]
        values = [result.get(timeout=240) for result in results]
    starts = records(rec, "starts:main")
    assert 20 == len(values)
    assert [1] * 20 == list(Counter(s["id"] for s in starts).values())
    assert max_in_window([s["at"] for s in starts], SECOND) <= 11
    assert 2 == len({s["hostname"] for s in starts})
    skews = {s["hostname"]: round(s["local"] - s["at"] / SECOND) for s in starts}
    assert {10, -10} == set(skews.values()), skews  # the clocks really were 10 s off


def test_a_fast_clocks_early_delivery_waits_for_its_slot(server: RedisServer,
                                                         rec: redis.Redis) -> None:
    """A task reserved for 3 s from now, due by the publisher's (true) clock: the worker 10 s
    fast takes it at once, Redis time says it is early, and it starts on its slot anyway."""
    server.client(1).flushdb()
    with skewed_fleet(server, ["+10s"]) as app:
        seconds, micros = rec.time()
        slot = seconds * SECOND + micros + 3 * SECOND
        due = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)
        result = app.main_task.apply_async((7,), eta=due, headers={HEADER_SLOT: slot})
        assert 7 == result.get(timeout=60)["i"]
    (start,) = records(rec, "starts:main")
    assert slot - 5_000 <= start["at"] <= slot + 500_000  # on its slot, not 10 s early
    reasons = [t["reason"] for t in records(rec, "throttled")]
    assert "early" in reasons, reasons
