"""The demo's Celery app; workers and producer read their configuration from the environment.

``TASKTHROTTLE_DEMO_BROKER``  broker and result backend URL (Redis)
``TASKTHROTTLE_DEMO_STORE``   the throttle store (``taskthrottle_redis_url``)
``TASKTHROTTLE_DEMO_VENDOR``  the vendor API's base URL
``TASKTHROTTLE_DEMO_RATE``, ``TASKTHROTTLE_DEMO_BURST``, ``TASKTHROTTLE_DEMO_THROTTLE`` (name)
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any

from celery import Celery

from taskthrottle import Throttle, ThrottledTask
from taskthrottle.task import HEADER_DEFERRALS

_env = os.environ.get
RATE = _env("TASKTHROTTLE_DEMO_RATE", "10/s")
BURST = int(_env("TASKTHROTTLE_DEMO_BURST", "1"))
VENDOR = _env("TASKTHROTTLE_DEMO_VENDOR", "http://127.0.0.1:8000")

app = Celery("taskthrottle_demo", broker=_env("TASKTHROTTLE_DEMO_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    result_backend=app.conf.broker_url,
    result_expires=3600,
    taskthrottle_redis_url=_env("TASKTHROTTLE_DEMO_STORE", app.conf.broker_url),
    taskthrottle_prefix="taskthrottle-demo:",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

vendor = Throttle(_env("TASKTHROTTLE_DEMO_THROTTLE", "demo-vendor"), RATE, burst=BURST)


def call_vendor(task_id: str) -> int:
    """One GET to the vendor; returns the HTTP status (a 429 is an answer, not an error)."""
    try:
        with urllib.request.urlopen(f"{VENDOR}/call?task={task_id}", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _run(task: Any) -> dict[str, int]:
    deferrals = (task.request.headers or {}).get(HEADER_DEFERRALS, 0)
    return {"status": call_vendor(task.request.id), "deferrals": deferrals}


@app.task(bind=True, base=ThrottledTask, throttle=vendor, name="demo.taskthrottle")
def with_taskthrottle(self: Any) -> dict[str, int]:
    return _run(self)


@app.task(bind=True, rate_limit=RATE, name="demo.celery_rate_limit")
def with_celery_rate_limit(self: Any) -> dict[str, int]:
    return _run(self)


@app.task(bind=True, name="demo.unthrottled")
def unthrottled(self: Any) -> dict[str, int]:
    return _run(self)


TASKS = {
    "taskthrottle": with_taskthrottle,
    "celery_rate_limit": with_celery_rate_limit,
    "unthrottled": unthrottled,
}
