"""Run the demo job: M tasks, each calling the vendor once, on K real workers; report."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from celery import Celery

from taskthrottle._procs import RedisServer, WorkerFleet
from taskthrottle.demo.vendor import Vendor
from taskthrottle.rate import Rate

MODES = ("taskthrottle", "celery_rate_limit", "unthrottled")
#: The queue that already-running workers (``--workers 0``, e.g. docker-compose) consume.
SHARED_QUEUE = "taskthrottle-demo"


@dataclass(frozen=True)
class Options:
    workers: int = 3
    concurrency: int = 2
    tasks: int = 60
    rate: str = "10/s"
    burst: int = 1
    redis_url: str | None = None
    timeout: float | None = None
    vendor_bind: tuple[str, int] = ("127.0.0.1", 0)


@dataclass(frozen=True)
class Report:
    """One mode's result; the keys of ``--json``."""

    tasks: int
    done: int
    lost: int
    duplicates: int
    vendor_429: int
    limit_per_s: float
    achieved_per_s: float
    max_in_1s: int
    deferrals_per_task: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def redis_for(options: Options) -> Iterator[tuple[str, str]]:
    """(broker URL, throttle store URL): the user's Redis, or an embedded one for the run."""
    if options.redis_url:
        yield options.redis_url, options.redis_url
        return
    with RedisServer() as server:
        yield server.url(0), server.url(1)


def run_mode(
    mode: str, options: Options, broker: str, store: str,
    progress: Callable[[str], None] = lambda _: None,
) -> Report:
    """Run the job once with one kind of throttling and measure it at the vendor."""
    rate = Rate.parse(options.rate, owner="--rate")
    vendor = Vendor.for_rate(rate.count, rate.period, options.burst)
    vendor_url = vendor.serve(*options.vendor_bind)
    run_id = uuid.uuid4().hex[:8]
    external = options.workers == 0  # workers already running elsewhere (docker-compose)
    queue = SHARED_QUEUE if external else f"taskthrottle-demo-{run_id}"
    env = {
        "TASKTHROTTLE_DEMO_BROKER": broker,
        "TASKTHROTTLE_DEMO_STORE": store,
        "TASKTHROTTLE_DEMO_VENDOR": vendor_url,
        "TASKTHROTTLE_DEMO_RATE": options.rate,
        "TASKTHROTTLE_DEMO_BURST": str(options.burst),
        "TASKTHROTTLE_DEMO_THROTTLE": f"demo-vendor-{run_id}",
    }
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    producer = _producer_app(broker)
    fleet = WorkerFleet("taskthrottle.demo.app", count=options.workers,
                        concurrency=options.concurrency, env=env, queues=[queue],
                        name=f"{mode}-")
    try:
        if external:
            progress(f"{mode}: using the workers that consume {queue!r}")
        else:
            progress(f"{mode}: starting {options.workers} workers x {options.concurrency}")
        with contextlib.nullcontext() if external else fleet:
            if external:
                _wait_for_any_worker(producer)
            else:
                fleet.wait_ready(producer)
            started = time.monotonic()
            results = [producer.send_task(f"demo.{mode}", queue=queue)
                       for _ in range(options.tasks)]
            expected = options.tasks / rate.per_second
            deadline = started + (options.timeout or max(60.0, expected * 2 + 30))
            values: dict[str, Any] = {}
            while len(values) < len(results) and time.monotonic() < deadline:
                for result in results:
                    if result.id not in values and result.ready():
                        values[result.id] = result.get(propagate=False)
                        result.forget()  # leave no result keys behind in the user's Redis
                stats = vendor.stats()
                progress(f"{mode}: {len(values)}/{options.tasks} done, "
                         f"{stats['calls']} vendor calls, {stats['status_429']} answered 429")
                time.sleep(0.5)
            seconds = time.monotonic() - started
    finally:
        vendor.close()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    calls = vendor.snapshot()
    times = [t for t, _, _ in calls]
    task_ids = {r.id for r in results}
    called = {task for _, task, _ in calls}
    per_task: dict[str, int] = {}
    for _, task, _ in calls:
        per_task[task] = per_task.get(task, 0) + 1
    done = sum(1 for v in values.values() if isinstance(v, dict))
    deferrals = sum(int(v.get("deferrals", 0)) for v in values.values() if isinstance(v, dict))
    span = (max(times) - min(times)) if len(times) > 1 else 0.0
    return Report(
        tasks=options.tasks,
        done=done,
        lost=len(task_ids - called),
        duplicates=sum(1 for task, n in per_task.items() if n > 1 and task in task_ids),
        vendor_429=sum(1 for *_, status in calls if status == 429),
        limit_per_s=round(rate.per_second, 3),
        achieved_per_s=round((len(times) - 1) / span, 2) if span else 0.0,
        max_in_1s=Vendor.max_in_window(times, 1.0),
        deferrals_per_task=round(deferrals / max(1, done), 3),
        seconds=round(seconds, 2),
    )


def _wait_for_any_worker(app: Celery, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not app.control.ping(timeout=1.0):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no worker answered within {timeout} s")


def _producer_app(broker: str) -> Celery:
    app = Celery("taskthrottle_demo_producer", broker=broker, backend=broker)
    app.conf.broker_connection_retry_on_startup = True
    return app


def failed(reports: dict[str, Report]) -> list[str]:
    """Why the demo should exit non-zero (empty when it should not)."""
    reasons = []
    for mode, report in reports.items():
        if report.lost:
            reasons.append(f"{mode}: {report.lost} task(s) lost")
        if report.duplicates:
            reasons.append(f"{mode}: {report.duplicates} task(s) ran twice")
    tt = reports.get("taskthrottle")
    if tt is not None and tt.vendor_429:
        reasons.append(f"taskthrottle: the vendor answered 429 {tt.vendor_429} time(s)")
    return reasons


def render(reports: dict[str, Report]) -> str:
    """The reports side by side, one column per mode."""
    rows = [
        ("tasks", "tasks"), ("done", "done"), ("lost", "lost"), ("run twice", "duplicates"),
        ("vendor 429s", "vendor_429"), ("limit (calls/s)", "limit_per_s"),
        ("achieved (calls/s)", "achieved_per_s"), ("most calls in any 1 s", "max_in_1s"),
        ("deferrals per task", "deferrals_per_task"), ("seconds", "seconds"),
    ]
    modes = list(reports)
    width = max(14, *(len(m) for m in modes))
    lines = ["".ljust(24) + "".join(m.rjust(width + 2) for m in modes)]
    for label, key in rows:
        lines.append(label.ljust(24) + "".join(
            str(getattr(reports[m], key)).rjust(width + 2) for m in modes))
    return "\n".join(lines)


def stderr_progress(enabled: bool) -> Callable[[str], None]:
    last = [0.0]

    def show(line: str) -> None:
        if not enabled:
            return
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            print(f"[demo] {line}", file=sys.stderr, flush=True)

    return show
