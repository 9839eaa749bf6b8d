"""The demo's Celery app; workers and producer read their configuration from the environment.

``TASKTHROTTLE_DEMO_BROKER``  broker and result backend URL (Redis)
``TASKTHROTTLE_DEMO_STORE``   the throttle store (``taskthrottle_redis_url``)
``TASKTHROTTLE_DEMO_VENDOR``  the vendor API's base URL
``TASKTHROTTLE_DEMO_RATE``, ``TASKTHROTTLE_DEMO_BURST``, ``TASKTHROTTLE_DEMO_THROTTLE`` (name)
``TASKTHROTTLE_DEMO_SCENARIO`` ``rate`` (the default), ``quota``, ``tenants`` or ``429``
``TASKTHROTTLE_DEMO_QUOTA``   the ``quota`` scenario's exact window, e.g. ``20/10s``
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any

from celery import Celery

from taskthrottle import Throttle, ThrottledTask
from taskthrottle.exceptions import RateLimited
from taskthrottle.task import HEADER_DEFERRALS
from taskthrottle.throttle import Limit

_env = os.environ.get
RATE = _env("TASKTHROTTLE_DEMO_RATE", "10/s")
BURST = int(_env("TASKTHROTTLE_DEMO_BURST", "1"))
VENDOR = _env("TASKTHROTTLE_DEMO_VENDOR", "http://127.0.0.1:8000")
SCENARIO = _env("TASKTHROTTLE_DEMO_SCENARIO", "rate")
QUOTA = _env("TASKTHROTTLE_DEMO_QUOTA", "20/10s")

app = Celery("taskthrottle_demo", broker=_env("TASKTHROTTLE_DEMO_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    result_backend=app.conf.broker_url,
    result_expires=3600,
    taskthrottle_redis_url=_env("TASKTHROTTLE_DEMO_STORE", app.conf.broker_url),
    taskthrottle_prefix="taskthrottle-demo:",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_NAME = _env("TASKTHROTTLE_DEMO_THROTTLE", "demo-vendor")
if SCENARIO == "quota":  # the vendor's rate and, on top, its exact quota
    vendor = Throttle(_NAME, RATE, Limit(QUOTA, exact=True), burst=BURST)
elif SCENARIO == "tenants":  # the vendor limits each tenant: one bucket per tenant
    vendor = Throttle(_NAME, RATE, burst=BURST, key="{tenant}")
else:
    vendor = Throttle(_NAME, RATE, burst=BURST)


def call_vendor_response(task_id: str, tenant: str = "") -> tuple[int, Any]:
    """One GET to the vendor; its HTTP status and headers (a 429 is an answer, not an error)."""
    url = f"{VENDOR}/call?task={task_id}" + (f"&tenant={tenant}" if tenant else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.headers
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.headers


def call_vendor(task_id: str, tenant: str = "") -> int:
    """One GET to the vendor; returns the HTTP status (a 429 is an answer, not an error)."""
    return call_vendor_response(task_id, tenant)[0]


def _run(task: Any, tenant: str = "", *, obey_429: bool = False) -> dict[str, int]:
    deferrals = (task.request.headers or {}).get(HEADER_DEFERRALS, 0)
    status, headers = call_vendor_response(task.request.id, tenant)
    if status == 429 and obey_429 and SCENARIO == "429":
        # the vendor said stop: pause the throttle for every worker, run this task later
        raise RateLimited.from_headers(headers)
    return {"status": status, "deferrals": deferrals}


@app.task(bind=True, base=ThrottledTask, throttle=vendor, name="demo.taskthrottle")
def with_taskthrottle(self: Any, tenant: str = "") -> dict[str, int]:
    return _run(self, tenant, obey_429=True)


@app.task(bind=True, rate_limit=RATE, name="demo.celery_rate_limit")
def with_celery_rate_limit(self: Any, tenant: str = "") -> dict[str, int]:
    return _run(self, tenant)


@app.task(bind=True, name="demo.unthrottled")
def unthrottled(self: Any, tenant: str = "") -> dict[str, int]:
    return _run(self, tenant)


TASKS = {
    "taskthrottle": with_taskthrottle,
    "celery_rate_limit": with_celery_rate_limit,
    "unthrottled": unthrottled,
}
