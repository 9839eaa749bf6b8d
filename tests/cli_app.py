"""The Celery app the CLI tests name with ``-A cli_app:app``: throttled tasks and a setting.

The throttle store's URL is set by the tests (``app.conf.taskthrottle_redis_url``).
"""

from __future__ import annotations

from celery import Celery

from taskthrottle import Throttle, ThrottledTask
from taskthrottle.throttle import Limit

app = Celery("cli", broker="memory://", set_as_current=False)
app.conf.taskthrottle_throttles = {"cli.settings.*": "3/m"}  # a throttle named by a glob

vendor = Throttle("cli-app-vendor", Limit("10/s", burst=3), Limit("5/m", exact=True),
                  concurrency=2)
tenants = Throttle("cli-app-tenants", "1/h", key="{tenant}", concurrency=4)


@app.task(base=ThrottledTask, throttle=vendor, name="cli.push", shared=False)
def push() -> None: ...


@app.task(base=ThrottledTask, throttle=tenants, name="cli.sync", shared=False)
def sync(tenant: str) -> None: ...
