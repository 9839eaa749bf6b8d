"""The fleet on RabbitMQ (AMQP): the suite's own vhost on the machine's RabbitMQ, results and
throttle state in the suite's Redis."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fleetlib import fleet, records, wait_for
from kombu import Connection

from taskthrottle._procs import RedisServer
from taskthrottle.testing import max_in_window

pytestmark = pytest.mark.fleet

SECOND = 1_000_000


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def amqp() -> Iterator[str]:
    """A vhost of our own (removed afterwards) on the RabbitMQ of this machine."""
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("RabbitMQ is needed for these tests: install rabbitmq-server "
                    "(.ci/run does)")
    vhost = f"taskthrottle-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        with Connection(url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=3)
        yield url
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def app(amqp: str, server: RedisServer) -> Iterator[Any]:
    with fleet(amqp, server.url(0), server.url(2), count=3, concurrency=2,
               settings={"result_backend": server.url(1)}) as fleet_app:
        yield fleet_app


def test_three_workers_on_rabbitmq_keep_the_bound(app: Any, rec: redis.Redis) -> None:
    results = [app.main_task.delay(i) for i in range(40)]
    values = [result.get(timeout=60) for result in results]
    starts = records(rec, "starts:main")
    assert 40 == len(values)
    assert [1] * 40 == list(Counter(s["id"] for s in starts).values())
    assert max_in_window([s["at"] for s in starts], SECOND) <= 11
    assert {0} == {s["retries"] for s in starts}
    assert 3 == len({s["hostname"] for s in starts})


def test_a_chain_travels_through_deferrals_on_rabbitmq(app: Any, rec: redis.Redis) -> None:
    from celery import chain

    result = chain(app.add.s(1, 2), app.add.s(3), app.add.s(4)).delay()
    assert 10 == result.get(timeout=60)


def test_acks_late_task_of_a_killed_worker_is_redelivered_without_leaking(
        app: Any, rec: redis.Redis, r: redis.Redis) -> None:
    result = app.report_late.delay(4.0)
    wait_for(lambda: rec.llen("starts:late") >= 1, 30, "the task running")
    first = records(rec, "starts:late")[0]
    app.workers.kill(app.workers.hostnames.index(first["hostname"]), signal.SIGKILL)
    killed = time.monotonic()
    value = result.get(timeout=60)  # redelivered by RabbitMQ to a live worker, and run
    runs = records(rec, "starts:late")
    assert 2 == len(runs)
    assert runs[1]["hostname"] != first["hostname"]
    assert value["id"] == first["id"]
    # the lease is the task's: the redelivery took the dead run's slot, not a second one
    assert 1 == runs[1]["leases"]
    assert time.monotonic() - killed < app.reports.lease + 10
    wait_for(lambda: 0 == r.zcard(app.reports.redis_key() + ":c"), 5, "the lease released")
