"""Run the demo job: M tasks, each calling the vendor once, on K real workers; report."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from celery import Celery

from taskthrottle._procs import RedisServer, WorkerFleet
from taskthrottle.demo.vendor import Vendor
from taskthrottle.rate import Rate

MODES = ("taskthrottle", "celery_rate_limit", "unthrottled")
#: What the vendor enforces: ``rate`` its per-second limit (the default), ``quota`` also an exact
#: quota (twice the rate's calls per second, in any 10 s), ``tenants`` its limit per tenant,
#: ``429`` its limit plus one 429 with ``Retry-After: 2`` (an upstream hiccup) a third of the way.
SCENARIOS = ("rate", "quota", "tenants", "429")
QUOTA_WINDOW = 10.0
HICCUP_RETRY_AFTER = 2
#: the ``tenants`` scenario: the share of the tasks that the loud tenant enqueues, first
LOUD_SHARE = 0.9
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
    scenario: str = "rate"


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
    #: the scenario's own figures (none for ``rate``), keyed as in ``--json``
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.figures:
            data.pop("figures")
        return data


def quota_for(rate: Rate) -> int:
    """The ``quota`` scenario's exact quota in any :data:`QUOTA_WINDOW`: twice the rate's calls
    per second (20 in any 10 s for 10/s)."""
    return max(1, round(rate.per_second * 2))


def tenants_for(tasks: int) -> list[str]:
    """The tenant of each task, in enqueue order: "loud" first, then "quiet"."""
    loud = min(tasks - 1, round(tasks * LOUD_SHARE)) if tasks > 1 else tasks
    return ["loud"] * loud + ["quiet"] * (tasks - loud)


def _vendor_for(options: Options, rate: Rate) -> Vendor:
    base = Vendor.for_rate(rate.count, rate.period, options.burst)
    if options.scenario == "quota":
        return Vendor(base.allowed, base.window, quota=(quota_for(rate), QUOTA_WINDOW))
    if options.scenario == "tenants":
        return Vendor(base.allowed, base.window, per_tenant=True)
    if options.scenario == "429":
        return Vendor(base.allowed, base.window, hiccup_at=max(2, options.tasks // 3),
                      hiccup_retry_after=HICCUP_RETRY_AFTER)
    return base


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
    if options.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {options.scenario!r}: expected one of {SCENARIOS}")
    vendor = _vendor_for(options, rate)
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
        "TASKTHROTTLE_DEMO_SCENARIO": options.scenario,
        "TASKTHROTTLE_DEMO_QUOTA": f"{quota_for(rate)}/{QUOTA_WINDOW:g}s",
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
            enqueued: dict[str, tuple[float, str]] = {}  # task id: (monotonic time, tenant)
            if options.scenario == "tenants":
                results = []
                for tenant in tenants_for(options.tasks):
                    result = producer.send_task(f"demo.{mode}", queue=queue,
                                                kwargs={"tenant": tenant})
                    enqueued[result.id] = (time.monotonic(), tenant)
                    results.append(result)
            else:
                results = [producer.send_task(f"demo.{mode}", queue=queue)
                           for _ in range(options.tasks)]
            expected = options.tasks / rate.per_second
            if options.scenario == "quota":
                expected = max(expected, options.tasks * QUOTA_WINDOW / quota_for(rate))
            elif options.scenario == "429":
                expected += HICCUP_RETRY_AFTER
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
    vendor_429 = sum(1 for *_, status in calls if status == 429)
    duplicates = sum(1 for task, n in per_task.items() if n > 1 and task in task_ids)
    figures: dict[str, Any] = {}
    if options.scenario == "quota":
        quota = quota_for(rate)
        figures = {"quota": quota, "quota_window_s": QUOTA_WINDOW,
                   "max_in_quota_window": Vendor.max_in_window(times, QUOTA_WINDOW)}
    elif options.scenario == "tenants":
        figures = _tenant_figures(vendor, values, enqueued)
    elif options.scenario == "429":
        # the task the hiccup refused runs again after the pause: "twice" counts tasks the
        # vendor accepted more than once
        accepted: dict[str, int] = {}
        for _, task, status in calls:
            if status == 200:
                accepted[task] = accepted.get(task, 0) + 1
        duplicates = sum(1 for task, n in accepted.items() if n > 1 and task in task_ids)
        pause = vendor.pause
        hiccups = 1 if pause else 0
        figures = {
            "hiccup_429": hiccups,
            "limit_429": vendor_429 - hiccups,
            "pause_s": HICCUP_RETRY_AFTER,
            # calls that arrived after the hiccup's 429, within its Retry-After
            "calls_during_pause": (sum(1 for t in times if pause[0] < t < pause[1])
                                   if pause else 0),
            "accepted_once": sum(1 for task in task_ids if accepted.get(task) == 1),
        }
    return Report(
        tasks=options.tasks,
        done=done,
        lost=len(task_ids - called),
        duplicates=duplicates,
        vendor_429=vendor_429,
        limit_per_s=round(rate.per_second, 3),
        achieved_per_s=round((len(times) - 1) / span, 2) if span else 0.0,
        max_in_1s=Vendor.max_in_window(times, 1.0),
        deferrals_per_task=round(deferrals / max(1, done), 3),
        seconds=round(seconds, 2),
        figures=figures,
    )


def _tenant_figures(vendor: Vendor, values: dict[str, Any],
                    enqueued: dict[str, tuple[float, str]]) -> dict[str, Any]:
    """Per tenant: tasks, done, most calls in any 1 s, and how long after its enqueue a task's
    last vendor call came (mean and max; the vendor runs in this process: one clock)."""
    calls = vendor.snapshot_tenants()
    last_call: dict[str, float] = {}
    for t, task, _, _ in calls:
        last_call[task] = t
    figures: dict[str, Any] = {}
    for tenant in ("loud", "quiet"):
        ids = [task for task, (_, owner) in enqueued.items() if owner == tenant]
        waits = [last_call[task] - enqueued[task][0] for task in ids if task in last_call]
        figures[f"{tenant}_tasks"] = len(ids)
        figures[f"{tenant}_done"] = sum(1 for task in ids if isinstance(values.get(task), dict))
        figures[f"{tenant}_429"] = sum(1 for *_, status, owner in calls
                                       if owner == tenant and status == 429)
        figures[f"{tenant}_max_in_1s"] = Vendor.max_in_window(
            [t for t, _, _, owner in calls if owner == tenant], 1.0)
        figures[f"{tenant}_finish_s_mean"] = round(sum(waits) / len(waits), 2) if waits else 0.0
        figures[f"{tenant}_finish_s_max"] = round(max(waits), 2) if waits else 0.0
    figures["tenant_limit_per_1s"] = vendor.allowed
    return figures


def _wait_for_any_worker(app: Celery, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not app.control.ping(timeout=1.0):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no worker answered within {timeout} s")


def _producer_app(broker: str) -> Celery:
    app = Celery("taskthrottle_demo_producer", broker=broker, backend=broker)
    app.conf.broker_connection_retry_on_startup = True
    return app


def failed(reports: dict[str, Report], scenario: str = "rate") -> list[str]:
    """Why the demo should exit non-zero (empty when it should not)."""
    reasons = []
    for mode, report in reports.items():
        if report.lost:
            reasons.append(f"{mode}: {report.lost} task(s) lost")
        if report.duplicates:
            reasons.append(f"{mode}: {report.duplicates} task(s) ran twice")
    tt = reports.get("taskthrottle")
    if tt is None:
        return reasons
    figures = tt.figures
    if scenario == "429":
        if figures.get("limit_429"):
            reasons.append(f"taskthrottle: the vendor answered 429 past its limit "
                           f"{figures['limit_429']} time(s)")
        if figures.get("calls_during_pause"):
            reasons.append(f"taskthrottle: {figures['calls_during_pause']} call(s) during the "
                           "vendor's Retry-After pause")
        if figures.get("accepted_once") != tt.tasks:
            reasons.append(f"taskthrottle: {figures.get('accepted_once')} of {tt.tasks} tasks "
                           "done exactly once")
    elif tt.vendor_429:
        reasons.append(f"taskthrottle: the vendor answered 429 {tt.vendor_429} time(s)")
    if scenario == "quota" and figures.get("max_in_quota_window", 0) > figures.get("quota", 0):
        reasons.append(f"taskthrottle: {figures['max_in_quota_window']} calls in a "
                       f"{figures['quota_window_s']:g} s window, quota {figures['quota']}")
    if scenario == "tenants" and figures.get("quiet_tasks") and figures.get("loud_tasks") and (
            figures["quiet_finish_s_max"] >= figures["loud_finish_s_max"]):
        reasons.append("taskthrottle: the quiet tenant waited behind the loud one "
                       f"({figures['quiet_finish_s_max']} s vs {figures['loud_finish_s_max']} s)")
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
    figures = list(dict.fromkeys(k for m in modes for k in reports[m].figures))
    for key in figures:
        label = FIGURE_LABELS.get(key, key.replace("_", " "))
        lines.append(label.ljust(24) + "".join(
            str(reports[m].figures.get(key, "")).rjust(width + 2) for m in modes))
    return "\n".join(lines)


FIGURE_LABELS = {
    "quota": "quota (calls)", "quota_window_s": "quota window (s)",
    "max_in_quota_window": "most in any quota window",
    "hiccup_429": "hiccup 429s", "limit_429": "429s past the limit",
    "pause_s": "Retry-After (s)", "calls_during_pause": "calls during the pause",
    "accepted_once": "accepted exactly once", "tenant_limit_per_1s": "tenant limit per 1 s",
    "loud_finish_s_mean": "loud: finish s (mean)", "loud_finish_s_max": "loud: finish s (max)",
    "quiet_finish_s_mean": "quiet: finish s (mean)", "quiet_finish_s_max": "quiet: finish s (max)",
    "loud_max_in_1s": "loud: most in any 1 s", "quiet_max_in_1s": "quiet: most in any 1 s",
}


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
