"""The Celery app ``bench/load.py`` runs in real ``celery worker`` processes.

Configured from the environment (the workers and the benchmark read the same variables):

``LOAD_BROKER``       broker URL (Redis); results go to ``LOAD_RESULTS`` (default: the broker)
``LOAD_STORE``        the throttle store (``taskthrottle_redis_url``): ``redis://`` or
                      ``redis+cluster://``
``LOAD_RECORD``       where each task records its start, timed by that Redis's ``TIME`` (the
                      one clock of the benchmark), and where ``task_throttled`` is counted
``LOAD_QUEUE``        the queue of this run
``LOAD_RATE``         the main throttle's limit (default ``100/s``), ``LOAD_BURST`` (``1``)
``LOAD_TENANT_RATE``  each tenant's limit (default ``2/s``, burst 1)

Tasks: ``load.main(i)`` is admitted by ``load-main`` alone; ``load.tenant(i, tenant=...)`` by
``[load-main, load-tenant]``, the second one a bucket per tenant (``key="{tenant}"``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_process_init

from taskthrottle import Throttle, ThrottledTask, task_admitted, task_throttled
from taskthrottle.task import HEADER_DEFERRALS

_env = os.environ.get
RATE = _env("LOAD_RATE", "100/s")
BURST = int(_env("LOAD_BURST", "1"))
TENANT_RATE = _env("LOAD_TENANT_RATE", "2/s")

app = Celery("load", broker=_env("LOAD_BROKER", "memory://"))
app.conf.update(
    result_backend=_env("LOAD_RESULTS", _env("LOAD_BROKER")),
    taskthrottle_redis_url=_env("LOAD_STORE"),
    task_default_queue=_env("LOAD_QUEUE", "load"),
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

main = Throttle("load-main", RATE, burst=BURST)
tenant = Throttle("load-tenant", TENANT_RATE, key="{tenant}")

_record: redis.Redis | None = None


def record() -> redis.Redis:
    global _record
    if _record is None:
        _record = redis.Redis.from_url(os.environ["LOAD_RECORD"])
    return _record


def _connect_record(**_: Any) -> None:
    """Connect before the first task: a start is timed by one TIME call, not by a connect."""
    global _record
    _record = None
    record().ping()


worker_process_init.connect(_connect_record, weak=False)


_admitted_at = 0.0  # monotonic time of this process's latest task_admitted signal


def _on_admitted(sender: Any = None, **_: Any) -> None:
    global _admitted_at
    _admitted_at = time.monotonic()


task_admitted.connect(_on_admitted, weak=False)


def mark(task: Any, kind: str, i: int, tenant_name: str = "") -> None:
    """Record this start on the record Redis's clock (µs), with what the task saw, and how
    long after its admission (the last ``task_admitted``) the TIME reply was back: an upper
    bound of how late the recorded start is."""
    seconds, micros = record().time()
    lag_us = round((time.monotonic() - _admitted_at) * 1_000_000)
    record().rpush("starts", json.dumps({
        "id": task.request.id, "at": seconds * 1_000_000 + micros, "kind": kind, "i": i,
        "tenant": tenant_name,
        "deferrals": (task.request.headers or {}).get(HEADER_DEFERRALS, 0),
        "pid": os.getpid(), "lag_us": lag_us,
    }))


@app.task(bind=True, base=ThrottledTask, throttle=main, name="load.main")
def main_task(self: Any, i: int) -> int:
    mark(self, "main", i)
    return i


@app.task(bind=True, base=ThrottledTask, throttle=[main, tenant], name="load.tenant")
def tenant_task(self: Any, i: int, *, tenant: str) -> int:
    mark(self, "tenant", i, tenant)
    return i


_DEFERRED = """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ' ' .. redis.call('TIME')[1])
"""


def _on_throttled(sender: Any = None, **info: Any) -> None:
    """Every re-publish, counted by the throttle and reason that caused it; and per task, its
    latest deferral count and when it was (record clock, s): a task not started by the end of
    the run but deferred lately is still going round, not lost."""
    record().eval(_DEFERRED, 2, "throttled", "last_deferral",
                  f"{info['throttle']}:{info['reason']}", info["task_id"], info["deferrals"])


task_throttled.connect(_on_throttled, weak=False)
