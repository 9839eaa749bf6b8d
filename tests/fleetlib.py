"""Helpers for tests that run real worker processes."""

from __future__ import annotations

import ast
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from taskthrottle._procs import WorkerFleet

TESTS = os.path.dirname(os.path.abspath(__file__))


@contextmanager
def fleet(broker: str, store: str, record: str, *, count: int, concurrency: int,
          max_delay: float = 300.0, pool: str = "prefork",
          extra_queues: int = 0, settings: dict[str, Any] | None = None) -> Iterator[Any]:
    """Start ``count`` workers of ``fleet_app`` on a queue of their own (and ``extra_queues``
    more, named ``app.queues``), with extra ``settings`` (JSON values) in their app; yield the
    app."""
    queue = f"fleet-{uuid.uuid4().hex[:8]}"
    env = {"FLEET_BROKER": broker, "FLEET_STORE": store, "FLEET_RECORD": record,
           "FLEET_MAX_DELAY": str(max_delay), "FLEET_QUEUE": queue,
           "FLEET_SETTINGS": json.dumps(settings or {}),
           "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    os.environ.update(env)
    import fleet_app

    fleet_app.app.conf.task_default_queue = queue
    fleet_app.app.conf.result_backend = broker
    fleet_app.app.conf.broker_url = broker
    fleet_app.app.conf.taskthrottle_redis_url = store
    fleet_app.app.conf.update(settings or {})
    fleet_app.app._after_fork()  # drop connection pools made for an earlier broker
    fleet_app._record = None
    queues = [queue] + [f"{queue}-{i + 1}" for i in range(extra_queues)]
    fleet_app.queues = queues  # type: ignore[attr-defined]
    workers = WorkerFleet("fleet_app", count=count, concurrency=concurrency, env=env,
                          queues=queues, pool=pool, cwd=TESTS)
    with workers:
        workers.wait_ready(fleet_app.app)
        fleet_app.workers = workers  # type: ignore[attr-defined]
        yield fleet_app


def records(r: redis.Redis, key: str) -> list[Any]:
    return [ast.literal_eval(item.decode()) for item in r.lrange(key, 0, -1)]  # type: ignore[union-attr]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def module_fleet(*, count: int, concurrency: int) -> Any:
    """A module-scoped ``app`` fixture: ``count`` workers × ``concurrency`` on the session
    server (broker db 1, store db 0, record db 2)."""
    import pytest

    @pytest.fixture(scope="module")
    def app(server: Any) -> Iterator[Any]:
        server.client(1).flushdb()
        with fleet(server.url(1), server.url(0), server.url(2), count=count,
                   concurrency=concurrency) as fleet_app:
            yield fleet_app

    return app
