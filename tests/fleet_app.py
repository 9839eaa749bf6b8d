"""The Celery app the fleet tests run in real ``celery worker`` processes.

Configured from the environment: ``FLEET_BROKER`` (broker and results), ``FLEET_STORE`` (the
throttle store), ``FLEET_RECORD`` (where tasks record what they saw, timed by that Redis's
``TIME``: the one clock of the test), ``FLEET_MAX_DELAY``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_process_init

from taskthrottle import (
    Limit,
    RateLimited,
    Throttle,
    ThrottledTask,
    task_throttled,
    task_unthrottled,
)
from taskthrottle.task import HEADER_DEFERRALS

app = Celery("fleet", broker=os.environ.get("FLEET_BROKER", "memory://"))
app.conf.update(
    result_backend=os.environ.get("FLEET_BROKER"),
    taskthrottle_redis_url=os.environ.get("FLEET_STORE"),
    taskthrottle_max_delay=float(os.environ.get("FLEET_MAX_DELAY", "300")),
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_default_queue=os.environ.get("FLEET_QUEUE", "fleet"),
)
app.conf.update(json.loads(os.environ.get("FLEET_SETTINGS") or "{}"))

_record: redis.Redis | None = None


def record() -> redis.Redis:
    global _record
    if _record is None:
        _record = redis.Redis.from_url(os.environ["FLEET_RECORD"])
    return _record


def _connect_record(**_: Any) -> None:
    """Open the record connection before any task runs: a start is timed by one TIME call,
    not by a connect that happens to come first."""
    global _record
    _record = None
    record().ping()


worker_process_init.connect(_connect_record, weak=False)


def mark(bucket: str, task: Any, **extra: Any) -> dict[str, Any]:
    """Record a start on the record Redis's clock; return what the task saw."""
    seconds, micros = record().time()
    seen = {
        "id": task.request.id,
        "at": seconds * 1_000_000 + micros,
        "retries": task.request.retries,
        "deferrals": (task.request.headers or {}).get(HEADER_DEFERRALS, 0),
        "hostname": task.request.hostname,
        "pid": os.getpid(),
        "local": time.time(),  # this process's own clock (skewed on purpose in test_skew)
        **extra,
    }
    record().rpush(f"starts:{bucket}", repr(seen))
    return seen


main = Throttle("fleet-main", "10/s")
shared = Throttle("fleet-shared", "5/s")
slow = Throttle("fleet-slow", "5/s")
hops = Throttle("fleet-hops", "1/5s")
hops_too = Throttle("fleet-hops-too", "1/5s")
stall = Throttle("fleet-stall", "20/s")
fast = Throttle("fleet-fast", "100/s")
multi = Throttle("fleet-multi", "10/s", Limit("30/5s", exact=True))
window = Throttle("fleet-window", Limit("20/10s", exact=True))
vendor = Throttle("fleet-vendor", "30/s")
tenant = Throttle("fleet-tenant", "20/s", key="{tenant}")
reports = Throttle("fleet-reports", concurrency=3, lease=3)
upstream = Throttle("fleet-upstream", "10/s")
tunable = Throttle("fleet-tunable", "20/s")


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=main, name="fleet.main")
def main_task(self: Any, i: int) -> dict[str, Any]:
    return mark("main", self, i=i)


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=shared, name="fleet.shared_a")
def shared_a(self: Any, i: int) -> dict[str, Any]:
    return mark("shared", self, i=i, kind="a")


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=shared, name="fleet.shared_b")
def shared_b(self: Any, i: int) -> dict[str, Any]:
    return mark("shared", self, i=i, kind="b")


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=slow, name="fleet.echo")
def echo(self: Any, x: Any, *, tag: str = "") -> dict[str, Any]:
    headers = {k: v for k, v in (self.request.headers or {}).items()
               if not k.startswith("taskthrottle")}
    mark("echo", self, x=x)
    delivery = self.request.delivery_info or {}
    return {"x": x, "tag": tag, "id": self.request.id, "retries": self.request.retries,
            "headers": headers,
            "deferrals": (self.request.headers or {}).get(HEADER_DEFERRALS, 0),
            "expires": self.request.expires, "timelimit": list(self.request.timelimit or ()),
            "routing_key": delivery.get("routing_key"), "priority": delivery.get("priority")}


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=slow, name="fleet.add")
def add(self: Any, x: int, y: int) -> int:
    mark("add", self, x=x, y=y)
    return x + y


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=slow, name="fleet.fail")
def fail(self: Any) -> None:
    mark("fail", self)
    raise ValueError("boom")


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=fast, name="fleet.fast")
def fast_task(self: Any, i: int) -> dict[str, Any]:
    return mark("fast", self, i=i)


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=stall, name="fleet.stall")
def stall_task(self: Any, i: int) -> dict[str, Any]:
    return mark("stall", self, i=i)


@app.task(
    shared=False, bind=True, base=ThrottledTask, throttle=slow, name="fleet.flaky", max_retries=3)
def flaky(self: Any) -> dict[str, Any]:
    seen = mark("flaky", self, slot=(self.request.headers or {}).get("taskthrottle_slot"))
    if self.request.retries == 0:
        raise self.retry(countdown=0.1)
    return seen


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=multi, name="fleet.multi")
def multi_task(self: Any, i: int) -> dict[str, Any]:
    return mark("multi", self, i=i)


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=window, name="fleet.window")
def window_task(self: Any, i: int) -> dict[str, Any]:
    return mark("window", self, i=i)


@app.task(
    shared=False, bind=True, base=ThrottledTask, throttle=[vendor, tenant], name="fleet.tenant")
def tenant_task(self: Any, i: int, *, tenant: str) -> dict[str, Any]:
    return mark("tenant", self, i=i, tenant=tenant)


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=reports, name="fleet.report")
def report_task(self: Any, i: int, seconds: float) -> dict[str, Any]:
    """Counts the tasks running right now in the record Redis: the cap, as the tasks see it."""
    running = record().incr("running")
    try:
        seen = mark("report", self, i=i, running=running)
        time.sleep(seconds)
        return seen
    finally:
        record().decr("running")


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=reports, name="fleet.report_ends",
          max_retries=1)
def report_ends(self: Any, how: str) -> str:
    """Ends its run as told: ``fail``, ``retry`` once, or ``sleep`` (until revoked)."""
    mark("ends", self, how=how, leases=record_leases())
    if how == "fail":
        raise ValueError("boom")
    if how == "retry" and self.request.retries == 0:
        raise self.retry(countdown=0.2)
    if how == "sleep":
        time.sleep(60)
    return how


handoff = Throttle("fleet-handoff", "1/s")


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=handoff, name="fleet.handoff_early")
def handoff_early(self: Any, i: int) -> dict[str, Any]:
    return mark("handoff_early", self, i=i)


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=handoff, name="fleet.handoff_late",
          acks_late=True, reject_on_worker_lost=True)
def handoff_late(self: Any, i: int) -> dict[str, Any]:
    return mark("handoff_late", self, i=i)


@app.task(shared=False, name="fleet.errback")
def errback(*args: Any) -> None:
    record().rpush("errbacks", repr([str(arg)[:200] for arg in args]))


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=reports, name="fleet.report_retry",
          max_retries=1)
def report_retry(self: Any) -> bool:
    """Asks for a retry at once and cleans up for a while after; the retry, running meanwhile
    under the same id, says whether it still holds its slot once the first run has ended."""
    if self.request.retries == 0:
        try:
            raise self.retry(countdown=0)
        finally:
            time.sleep(0.5)  # cleanup after the retry was sent
            record().set("retry:first-ended", 1)
    while not record().get("retry:first-ended"):
        time.sleep(0.01)
    time.sleep(0.05)  # the first run's process has given back what it held by now
    store = redis.Redis.from_url(os.environ["FLEET_STORE"])
    return store.zscore(reports.redis_key() + ":c", self.request.id) is not None


@app.task(
    shared=False, bind=True, base=ThrottledTask, throttle=reports, name="fleet.report_overtime",
          time_limit=1)
def report_overtime(self: Any) -> None:
    """Runs past its hard time limit: the pool process is killed under it."""
    mark("overtime", self)
    time.sleep(60)


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=reports, name="fleet.report_late",
          acks_late=True, reject_on_worker_lost=True)
def report_late(self: Any, seconds: float) -> dict[str, Any]:
    """Acknowledged after it ran: a worker killed mid-run leaves it to be redelivered."""
    seen = mark("late", self, leases=record_leases(),
                redelivered=(self.request.delivery_info or {}).get("redelivered"))
    time.sleep(seconds)
    return seen


def record_leases() -> int:
    return int(redis.Redis.from_url(os.environ["FLEET_STORE"]).zcard(reports.redis_key() + ":c"))


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=upstream, name="fleet.call_vendor")
def call_vendor(self: Any, i: int) -> dict[str, Any]:
    """A vendor that answers 429 (Retry-After: 2) to the first call of the run."""
    seen = mark("vendor", self, i=i)
    if record().set("vendor:said-429", seen["at"], nx=True):
        raise RateLimited("2")
    return seen


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=tunable, name="fleet.tunable")
def tunable_task(self: Any, i: int) -> dict[str, Any]:
    return mark("tunable", self, i=i)


@app.task(shared=False, name="fleet.collect")
def collect(results: list[Any]) -> list[Any]:
    record().rpush("calls:collect", repr(results))
    return results


@app.task(shared=False, name="fleet.on_success")
def on_success(result: Any) -> None:
    record().rpush("calls:on_success", repr(result))


@app.task(shared=False, name="fleet.on_error")
def on_error(request: Any, exc: Any, traceback: Any) -> None:
    record().rpush("calls:on_error", repr((request.id, type(exc).__name__)))


@app.task(shared=False, bind=True, base=ThrottledTask, throttle=hops, name="fleet.hop")
def hop(self: Any) -> dict[str, Any]:
    return mark("hop", self)


@app.task(
    shared=False, bind=True, base=ThrottledTask, throttle=hops_too, name="fleet.hop_no_retries",
          max_retries=0)
def hop_no_retries(self: Any) -> dict[str, Any]:
    return mark("hop", self)


def _on_unthrottled(sender: Any = None, **info: Any) -> None:
    record().rpush("unthrottled", repr({"task": sender.name, "throttle": info["throttle"]}))


task_unthrottled.connect(_on_unthrottled, weak=False)


def _on_throttled(sender: Any = None, **info: Any) -> None:
    record().rpush("throttled", repr({
        "task": sender.name, "reason": info["reason"], "countdown": info["countdown"],
        "wait": info["wait"], "max_delay": app.conf.taskthrottle_max_delay,
    }))
    if sender.name.startswith("fleet.handoff_") and info["deferrals"] == 1:
        # The deferred copy is published; the process dies before the delivery is done with.
        record().rpush("killed-after-deferring", info["task_id"])
        os.kill(os.getpid(), signal.SIGKILL)


task_throttled.connect(_on_throttled, weak=False)
