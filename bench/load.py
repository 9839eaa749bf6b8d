"""Load: one 100/s throttle plus 200 per-tenant throttles, 5,000 tasks, 4 workers x 2 processes.

    python bench/load.py [--tasks 5000] [--rate 100/s] [--cluster] [--json]
                         [--tenant-tasks N] [--tenants 200] [--tenant-rate 2/s]
                         [--tenant-order batched|spread] [--workers 4] [--concurrency 2]
                         [--idle-timeout 60] [--save-starts PATH]

Real processes only: a redis-server for the broker, the results and the record (dbs 0, 1, 2),
another one as the throttle store (with ``--cluster``: a 3-master Redis Cluster on loopback,
``redis+cluster://``; the broker stays a plain Redis), and ``--workers`` ``celery worker``
processes x ``--concurrency`` prefork children running ``bench/load_app.py``.

The job (all enqueued at once, a backlog):
  ``load.main``    ``tasks - tenant_tasks`` tasks (default 4,000) on ``load-main`` alone
                   (``--rate``, a token bucket, burst 1)
  ``load.tenant``  ``tenant_tasks`` tasks (default tasks / 5 = 1,000) on ``[load-main,
                   load-tenant]``, ``load-tenant`` being ``Throttle("load-tenant", "2/s",
                   key="{tenant}")``: ``--tenants`` tenants (default 200, 5 tasks each)
Every task passes ``load-main``: the whole job is 100/s on one throttle, and a fifth of it also
passes its tenant's own 2/s bucket. The tenant tasks are spread evenly through the queue (every
5th message), a tenant's tasks next to each other (a tenant submits a small batch): its 5 tasks
arrive within ~0.25 s of each other, so each tenant's bucket really refuses (it allows 1 + 2 in
any 1 s), while the 200 buckets together (400/s) never hold back the main one.
``--tenant-order spread`` enqueues the tenants in turn instead (a tenant's tasks ~10 s apart):
its bucket then hardly ever refuses, which measures the cost of asking two throttles alone.

Each task body records its start on the record Redis's ``TIME`` (one clock for the fleet) with
its id and the ``taskthrottle_deferrals`` header it saw; every ``task_throttled`` signal is
counted there too (by throttle and reason). Reported:
  bound            most starts in any 1 s window (all tasks) vs burst + rate x 1 s (1 + 100)
  per tenant       most starts of one tenant in any 1 s window vs 1 + 2
  lost / twice     enqueued but never started / started more than once (both must be 0)
  re-publishes     task_throttled signals per enqueued task (every re-publish, also of a
                   task that never started); the ``taskthrottle_deferrals`` header the
                   started tasks saw, by kind, as a cross-check. The README's target: <= 1.1
  lost             with a timeout, a task not started may still be going round: those
                   re-published in the last 10 s of the run are counted apart
  utilisation      achieved starts/s (first to last start) / the limit
  store ops        ``INFO commandstats`` calls on the store (summed over the cluster's nodes)
                   from after the workers are up to after the last start, per executed task;
                   Redis counts the commands a script runs as calls too: "EVALSHA per task"
                   are the scripts run (acquire, give_back, lease release: a round trip each),
                   "commands per task" all of it (inside scripts, and the GET + HGET pause
                   check after an inline wait). The benchmark's own INFO and DBSIZE are left out
  store memory     ``used_memory`` (summed over nodes): before (scripts loaded, no worker
                   connected), right after the last start (keys and worker connections), and
                   after the workers stopped and DBSIZE reached 0 (``--idle-timeout``): back to
                   the baseline within ``--residue-kb``
The store runs with ``latency-tracking no`` (Redis 7 allocates a histogram per command name at
its first use, which is not data) and the Lua scripts loaded before the baseline, as in
``bench/memory.py``. Exit status 1 if a task was lost or ran twice, a bound was exceeded, or
the store did not come back to its baseline.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from importlib import resources
from typing import Any

import redis
from celery import Celery

from taskthrottle import _scripts
from taskthrottle._procs import RedisClusterServers, RedisServer, WorkerFleet
from taskthrottle.rate import Rate

BENCH = os.path.dirname(os.path.abspath(__file__))
SECOND = 1_000_000
#: commands the benchmark itself sends to the store while it measures (left out of the ops)
OWN_COMMANDS = {"info", "dbsize"}


def max_in_window(times_us: list[int], window_us: int) -> int:
    """Most timestamps in any closed window of ``window_us``."""
    ordered = sorted(times_us)
    return max((bisect.bisect_right(ordered, t + window_us) - i for i, t in enumerate(ordered)),
               default=0)


def plan(tasks: int, tenant_tasks: int, tenants: int,
         order: str = "batched") -> list[tuple[str, str]]:
    """(kind, tenant) of each task in enqueue order: the tenant tasks evenly among the main
    ones; ``batched``: each tenant's tasks consecutive among the tenant tasks, ``spread``:
    the tenants in turn (round robin)."""
    out: list[tuple[str, str]] = []
    j = 0
    for p in range(tasks):
        if (p + 1) * tenant_tasks // tasks > p * tenant_tasks // tasks:
            index = j * tenants // tenant_tasks if order == "batched" else j % tenants
            out.append(("tenant", f"t{index:03d}"))
            j += 1
        else:
            out.append(("main", ""))
    return out


class Store:
    """The throttle store's nodes (one, or every master of the cluster), read directly."""

    def __init__(self, url: str, nodes: list[redis.Redis], kind: str) -> None:
        self.url = url
        self.nodes = nodes
        self.kind = kind

    def prepare(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(redis.ResponseError):
                node.config_set("latency-tracking", "no")
            for lua in resources.files("taskthrottle").joinpath("lua").iterdir():
                if lua.name.endswith(".lua"):
                    node.script_load(_scripts.text(lua.name[:-4]))

    def calls(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for node in self.nodes:
            for name, stats in node.info("commandstats").items():
                total[name.removeprefix("cmdstat_")] += int(stats["calls"])
        return total

    def memory(self) -> dict[str, int]:
        out = {"used_memory": 0, "used_memory_dataset": 0, "used_memory_overhead": 0,
               "mem_clients_normal": 0, "mem_cluster_links": 0,
               "connected_clients": 0}
        for node in self.nodes:
            info = node.info("memory") | node.info("clients")
            for key in out:
                out[key] += int(info.get(key, 0))
        return out

    def used_memory(self, settle: float = 6.0) -> int:
        """used_memory once it has held still for 1 s (a server cron tick frees some buffers;
        a new cluster's nodes shed ~15 KB each in their first second), else the median of the
        last readings (a cluster's nodes move by ~1 KB to and fro)."""
        readings = [self.memory()["used_memory"]]
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            time.sleep(0.25)
            readings.append(self.memory()["used_memory"])
            if len(readings) >= 5 and len(set(readings[-5:])) == 1:
                return readings[-1]
        return sorted(readings[-9:])[len(readings[-9:]) // 2]

    def dbsize(self) -> int:
        return sum(int(node.dbsize()) for node in self.nodes)


@contextlib.contextmanager
def servers(cluster: bool) -> Iterator[tuple[RedisServer, Store]]:
    """(the broker's redis-server, the throttle store), both started for this run."""
    with RedisServer() as broker:
        if cluster:
            with RedisClusterServers(3) as nodes:
                yield broker, Store(nodes.url(), [n.client() for n in nodes.nodes],
                                    "redis cluster, 3 masters")
        else:
            with RedisServer() as store:
                yield broker, Store(store.url(0), [store.client(0)], "redis")


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (Linux; zeros elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            ticks = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


def progress(line: str) -> None:
    print(f"[load] {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rate = Rate.parse(args.rate, owner="--rate")
    tenant_rate = Rate.parse(args.tenant_rate, owner="--tenant-rate")
    tenant_tasks = args.tasks // 5 if args.tenant_tasks is None else args.tenant_tasks
    if not 0 <= tenant_tasks <= args.tasks or (tenant_tasks and args.tenants < 1):
        raise SystemExit("--tenant-tasks must be from 0 to --tasks, with --tenants >= 1")
    jobs = plan(args.tasks, tenant_tasks, args.tenants, args.tenant_order)
    with servers(args.cluster) as (broker_server, store):
        broker, results, record_url = (broker_server.url(0), broker_server.url(1),
                                       broker_server.url(2))
        rec = broker_server.client(2)
        store.prepare()
        progress(f"store: {store.kind} at {store.url}; broker {broker}")
        baseline = store.used_memory()
        before = store.memory() | {"used_memory": baseline, "dbsize": store.dbsize()}

        queue = f"load-{uuid.uuid4().hex[:8]}"
        env = {"LOAD_BROKER": broker, "LOAD_RESULTS": results, "LOAD_STORE": store.url,
               "LOAD_RECORD": record_url, "LOAD_QUEUE": queue, "LOAD_RATE": args.rate,
               "LOAD_BURST": str(args.burst), "LOAD_TENANT_RATE": args.tenant_rate,
               "PYTHONPATH": BENCH + os.pathsep + os.environ.get("PYTHONPATH", "")}
        producer = Celery("load_producer", broker=broker, backend=results)
        producer.conf.broker_connection_retry_on_startup = True
        fleet = WorkerFleet("load_app", count=args.workers, concurrency=args.concurrency,
                            env=env, queues=[queue], cwd=BENCH, name="load")
        progress(f"starting {args.workers} workers x {args.concurrency} prefork processes")
        with fleet:
            fleet.wait_ready(producer)
            calls_before = store.calls()
            load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
            cpu_before = cpu_ticks()
            sec, usec = rec.time()
            enqueue_at = sec * SECOND + usec
            started = time.monotonic()
            enqueued: dict[str, tuple[str, str]] = {}
            for i, (kind, tenant) in enumerate(jobs):
                if kind == "main":
                    result = producer.send_task("load.main", args=(i,), queue=queue)
                else:
                    result = producer.send_task("load.tenant", args=(i,),
                                                kwargs={"tenant": tenant}, queue=queue)
                enqueued[result.id] = (kind, tenant)
            enqueue_s = time.monotonic() - started
            progress(f"enqueued {len(enqueued)} tasks in {enqueue_s:.1f} s")
            timeout = args.timeout or max(120.0, args.tasks / rate.per_second * 3 + 60)
            deadline = started + timeout
            peak = {"used_memory": 0, "dbsize": 0}
            last_note = 0.0
            count = 0
            while True:
                count = int(rec.llen("starts"))
                memory, keys = store.memory()["used_memory"], store.dbsize()
                peak = {"used_memory": max(peak["used_memory"], memory),
                        "dbsize": max(peak["dbsize"], keys)}
                if count >= args.tasks or time.monotonic() > deadline:
                    break
                if any(p.poll() is not None for p in fleet.processes):
                    raise SystemExit(f"a worker exited; log:\n{fleet.logs()}")
                if time.monotonic() - last_note >= 5:
                    last_note = time.monotonic()
                    progress(f"{count}/{args.tasks} started, store: {keys} keys, "
                             f"used_memory {memory:,}")
                time.sleep(0.5)
            right_after = store.memory() | {"dbsize": store.dbsize()}
            done_s = time.monotonic() - started
            cpu_after = cpu_ticks()
            time.sleep(args.grace)  # a task started twice would show up meanwhile
            calls_after = store.calls()
            progress(f"{count}/{args.tasks} started after {done_s:.1f} s; stopping the workers")
            sec, _ = rec.time()
            end_s = int(sec)
            last_deferral = {k.decode(): v.decode().split()
                             for k, v in rec.hgetall("last_deferral").items()}
            if count < args.tasks:
                tails = [line for line in fleet.logs().splitlines() if line.strip()]
                progress(f"timed out after {timeout:.0f} s; the workers' last log lines:\n"
                         + "\n".join(tails[-8:]))
        idle_from = time.monotonic()
        while store.dbsize() and time.monotonic() - idle_from < args.idle_timeout:
            time.sleep(0.1)
        empty_after = time.monotonic() - idle_from
        left = store.dbsize()
        after_idle = store.memory() | {"used_memory": store.used_memory(), "dbsize": left}
        starts = [json.loads(item) for item in rec.lrange("starts", 0, -1)]
        throttled = {k.decode(): int(v) for k, v in rec.hgetall("throttled").items()}

    if args.save_starts:
        with open(args.save_starts, "w", encoding="utf-8") as handle:
            json.dump({"enqueue_at": enqueue_at, "starts": starts}, handle)
    return report(args, rate, tenant_rate, tenant_tasks, store.kind, enqueued, starts, throttled,
                  calls_before, calls_after, before, right_after, after_idle, peak,
                  enqueue_at=enqueue_at, enqueue_s=enqueue_s, done_s=done_s,
                  timed_out=count < args.tasks, timeout=timeout,
                  pending={i: (int(n), end_s - int(t)) for i, (n, t) in last_deferral.items()},
                  empty_after=empty_after if not left else None,
                  machine={"cpus": os.cpu_count(), "loadavg_1m_before": load_before,
                           "cpu_busy_during_run": round(
                               (cpu_after[0] - cpu_before[0])
                               / max(1, cpu_after[1] - cpu_before[1]), 3)})


def report(args: argparse.Namespace, rate: Rate, tenant_rate: Rate, tenant_tasks: int,
           store_kind: str, enqueued: dict[str, tuple[str, str]], starts: list[dict[str, Any]],
           throttled: dict[str, int], calls_before: Counter[str], calls_after: Counter[str],
           before: dict[str, int], right_after: dict[str, int], after_idle: dict[str, int],
           peak: dict[str, int], *, enqueue_at: int, enqueue_s: float, done_s: float,
           timed_out: bool, timeout: float, pending: dict[str, tuple[int, int]],
           empty_after: float | None, machine: dict[str, Any]) -> dict[str, Any]:
    per_id = Counter(s["id"] for s in starts)
    first = {}  # each task's first start
    for s in sorted(starts, key=lambda s: s["at"]):
        first.setdefault(s["id"], s)
    executed = len(first)
    times = sorted(s["at"] for s in starts)
    bound = args.burst + rate.per_second
    tenant_bound = 1 + tenant_rate.per_second
    by_tenant: dict[str, list[int]] = defaultdict(list)
    for s in starts:
        if s["kind"] == "tenant":
            by_tenant[s["tenant"]].append(s["at"])
    tenant_max = {t: max_in_window(ts, SECOND) for t, ts in by_tenant.items()}
    worst_tenant = max(tenant_max.values(), default=0)
    span = (times[-1] - times[0]) / SECOND if len(times) > 1 else 0.0
    achieved = (len(times) - 1) / span if span else 0.0

    def deferrals(kind: str | None) -> dict[str, Any]:
        seen = [int(s["deferrals"]) for s in first.values() if kind in (None, s["kind"])]
        spread = Counter(min(d, 3) for d in seen)
        return {"tasks": len(seen),
                "per_task": round(sum(seen) / len(seen), 3) if seen else 0.0,
                "max": max(seen, default=0),
                "tasks_by_deferrals": {("3+" if d == 3 else str(d)): spread[d]
                                       for d in sorted(spread)}}

    delta = {name: calls_after[name] - calls_before.get(name, 0) for name in calls_after}
    delta = {name: n for name, n in sorted(delta.items(), key=lambda kv: -kv[1])
             if n and name not in OWN_COMMANDS}
    commands = sum(delta.values())
    decisions = sum(n for name, n in delta.items() if name.startswith(("evalsha", "eval")))
    lost = sorted(set(enqueued) - set(per_id))
    # not started, but re-published within the last 10 s of the run: still going round
    cycling = [i for i in lost if i in pending and pending[i][1] <= 10]
    main_times = sorted(s["at"] for s in first.values() if s["kind"] == "main")
    # every start (both kinds) from the first start to the last main-only one: load-main's
    # use while it had a backlog of its own
    in_main_phase = [t for t in times if main_times and t <= main_times[-1]]
    main_span = (in_main_phase[-1] - in_main_phase[0]) / SECOND if len(in_main_phase) > 1 \
        else 0.0
    lags = sorted(int(s.get("lag_us", 0)) for s in starts)

    def lag_ms(q: float) -> float:
        return round(lags[min(len(lags) - 1, int(q * len(lags)))] / 1000, 2) if lags else 0.0

    def data(m: dict[str, int]) -> int:  # used_memory less client and cluster-bus buffers
        return m["used_memory"] - m["mem_clients_normal"] - m["mem_cluster_links"]
    twice = sum(1 for n in per_id.values() if n > 1)
    residue = after_idle["used_memory"] - before["used_memory"]
    return {
        "store": store_kind,
        "tasks": args.tasks,
        "main_only_tasks": args.tasks - tenant_tasks,
        "tenant_tasks": tenant_tasks,
        "tenant_order": args.tenant_order,
        "tenants": len({t for kind, t in enqueued.values() if kind == "tenant"}),
        "workers": args.workers, "concurrency": args.concurrency,
        "rate": args.rate, "burst": args.burst, "tenant_rate": args.tenant_rate,
        "started": executed,
        "lost": len(lost),
        "timed_out": timed_out,
        "timeout_s": round(timeout, 1),
        "not_started_still_deferred": len(cycling),
        "not_started_deferrals_max": max((pending[i][0] for i in cycling), default=0),
        "run_twice": twice,
        "max_in_1s": max_in_window(times, SECOND),
        "bound_1s": bound,
        "tenant_max_in_1s": worst_tenant,
        "tenant_bound_1s": tenant_bound,
        "tenants_over_bound": sum(1 for n in tenant_max.values() if n > tenant_bound),
        "limit_per_s": rate.per_second,
        "achieved_per_s": round(achieved, 2),
        "utilisation": round(achieved / rate.per_second, 4),
        "starts_per_s_until_last_main_only": round((len(in_main_phase) - 1) / main_span, 2)
        if main_span else 0.0,
        "start_recorded_after_admission_ms": {"p50": lag_ms(0.5), "p99": lag_ms(0.99),
                                              "max": lag_ms(1.0)},
        "enqueue_s": round(enqueue_s, 2),
        "first_start_after_enqueue_s": round((times[0] - enqueue_at) / SECOND, 3)
        if times else None,
        "last_start_after_enqueue_s": round((times[-1] - enqueue_at) / SECOND, 2)
        if times else None,
        "run_s": round(done_s, 2),
        "last_start_after_enqueue_s_by_kind": {
            kind: round((max(s["at"] for s in first.values() if s["kind"] == kind)
                         - enqueue_at) / SECOND, 2)
            for kind in ("main", "tenant") if any(s["kind"] == kind for s in first.values())},
        "machine": machine,
        "republishes": {"all": deferrals(None), "main_only": deferrals("main"),
                        "tenant": deferrals("tenant")},
        "task_throttled_signals": sum(throttled.values()),
        # every re-publish (task_throttled), those of tasks that never started included
        "republishes_per_task": round(sum(throttled.values()) / max(1, args.tasks), 3),
        "task_throttled_by_reason": dict(sorted(throttled.items(), key=lambda kv: -kv[1])),
        "store_commands": commands,
        "store_commands_per_task": round(commands / max(1, executed), 2),
        "store_evalsha_per_task": round(decisions / max(1, executed), 2),
        "store_commands_per_task_by_name": {name: round(n / max(1, executed), 3)
                                            for name, n in delta.items()},
        "memory_before": before,
        "memory_right_after": right_after,
        "memory_peak_sampled": peak,
        "memory_after_idle": after_idle,
        "keys_expired_after_s": None if empty_after is None else round(empty_after, 2),
        "residue_bytes": residue,
        "residue_without_buffers_bytes": data(after_idle) - data(before),
        "residue_limit_bytes": args.residue_kb * 1024,
    }


def problems(r: dict[str, Any]) -> list[str]:
    out = []
    if r["lost"]:
        out.append(f"{r['lost']} task(s) never started within {r['timeout_s']:g} s "
                   f"({r['not_started_still_deferred']} of them still being re-published, "
                   f"up to deferral {r['not_started_deferrals_max']})")
    if r["run_twice"]:
        out.append(f"{r['run_twice']} task(s) ran twice")
    if r["max_in_1s"] > r["bound_1s"]:
        out.append(f"{r['max_in_1s']} starts in a 1 s window, bound {r['bound_1s']:g}")
    if r["tenant_max_in_1s"] > r["tenant_bound_1s"]:
        out.append(f"a tenant started {r['tenant_max_in_1s']} in a 1 s window, bound "
                   f"{r['tenant_bound_1s']:g} ({r['tenants_over_bound']} tenants over)")
    if r["keys_expired_after_s"] is None:
        out.append(f"keys left after the idle wait: DBSIZE {r['memory_after_idle']['dbsize']}")
    if abs(r["residue_bytes"]) > r["residue_limit_bytes"]:
        out.append(f"used_memory {r['residue_bytes']:+,} bytes off its baseline")
    return out


def render(r: dict[str, Any]) -> str:
    rp = r["republishes"]
    ok = {True: "ok", False: "MISSED"}
    mem = (r["memory_before"], r["memory_right_after"], r["memory_after_idle"])
    rows = [
        ("started / enqueued", f"{r['started']} / {r['tasks']}", "", ""),
        ("lost (never started)", r["lost"], "0", ok[r["lost"] == 0]),
        ("  of them still being deferred", r["not_started_still_deferred"],
         f"timed out {r['timeout_s']:g} s" if r["timed_out"] else "", ""),
        ("run twice", r["run_twice"], "0", ok[r["run_twice"] == 0]),
        ("most starts in any 1 s", r["max_in_1s"], f"<= {r['bound_1s']:g}",
         ok[r["max_in_1s"] <= r["bound_1s"]]),
        ("one tenant's most in any 1 s", r["tenant_max_in_1s"], f"<= {r['tenant_bound_1s']:g}",
         ok[r["tenant_max_in_1s"] <= r["tenant_bound_1s"]]),
        ("achieved starts/s", r["achieved_per_s"], f"limit {r['limit_per_s']:g}", ""),
        ("utilisation", f"{r['utilisation']:.1%}", ">= 95%", ok[r["utilisation"] >= 0.95]),
        ("  until the last main-only start", r["starts_per_s_until_last_main_only"],
         "(all starts/s)", ""),
        ("re-publishes per enqueued task", f"{r['republishes_per_task']:.3f}", "<= 1.1",
         ok[r["republishes_per_task"] <= 1.1]),
        ("  header seen, started tasks", f"{rp['all']['per_task']:.3f}", "", ""),
        ("    main-only tasks", f"{rp['main_only']['per_task']:.3f}", "", ""),
        ("    tenant tasks", f"{rp['tenant']['per_task']:.3f}", "", ""),
        ("store commands per task", f"{r['store_commands_per_task']:.2f}", "", ""),
        ("  of them EVALSHA (scripts run)", f"{r['store_evalsha_per_task']:.2f}", "", ""),
        ("store used_memory before", f"{mem[0]['used_memory']:,}", "", ""),
        ("  right after the last start", f"{mem[1]['used_memory']:,}",
         f"{mem[1]['dbsize']} keys", ""),
        ("    of it client buffers", f"{mem[1]['mem_clients_normal']:,}",
         f"{mem[1]['connected_clients']} clients", ""),
        ("  after idle (DBSIZE 0)", f"{mem[2]['used_memory']:,}",
         "keys gone" if r["keys_expired_after_s"] is not None else "KEYS LEFT", ""),
        ("  residue vs before", f"{r['residue_bytes']:+,} B",
         f"within {r['residue_limit_bytes'] // 1024} KB",
         ok[abs(r["residue_bytes"]) <= r["residue_limit_bytes"]]),
        ("    less client/cluster buffers", f"{r['residue_without_buffers_bytes']:+,} B", "",
         ""),
    ]
    lines = [
        f"{r['tasks']} tasks: {r['main_only_tasks']} on load-main {r['rate']} (burst "
        f"{r['burst']}) + {r['tenant_tasks']} on [load-main, load-tenant {r['tenant_rate']} "
        f"per tenant] over {r['tenants']} tenants ({r['tenant_order']}); {r['workers']} workers x "
        f"{r['concurrency']} prefork; store: {r['store']}",
        f"{'':34}{'measured':>14}  {'bound/target':<16}",
    ]
    for label, value, target, verdict in rows:
        lines.append(f"{label:34}{value!s:>14}  {target:<16}{verdict}")
    reasons = ", ".join(f"{k} {v}" for k, v in r["task_throttled_by_reason"].items())
    lines.append(f"re-publishes by throttle:reason: {reasons}")
    spread = ", ".join(f"{k}: {v}" for k, v in rp["all"]["tasks_by_deferrals"].items())
    lines.append(f"tasks by re-publishes seen: {spread} (max {rp['all']['max']})")
    by_name = ", ".join(f"{k} {v:.2f}" for k, v in
                        list(r["store_commands_per_task_by_name"].items())[:8])
    lines.append(f"store commands per task by name: {by_name}")
    lines.append(f"enqueue took {r['enqueue_s']} s; first start {r['first_start_after_enqueue_s']}"
                 f" s, last {r['last_start_after_enqueue_s']} s after the first enqueue "
                 f"(Redis clock); keys gone {r['keys_expired_after_s']} s after the workers "
                 f"stopped; sampled peak: {r['memory_peak_sampled']['dbsize']} keys, "
                 f"{r['memory_peak_sampled']['used_memory']:,} B")
    by_kind = ", ".join(f"{k} {v} s" for k, v in r["last_start_after_enqueue_s_by_kind"].items())
    lag = r["start_recorded_after_admission_ms"]
    lines.append(f"start recorded after its admission (TIME reply back; upper bound): p50 "
                 f"{lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms")
    m = r["machine"]
    lines.append(f"last start by kind: {by_kind}; machine: {m['cpus']} CPUs, load "
                 f"{m['loadavg_1m_before']} before, {m['cpu_busy_during_run']:.0%} busy "
                 "during the run (every process, not only this benchmark's)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rate", default="100/s", help="load-main's limit")
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--tenant-tasks", type=int, default=None,
                        help="tasks on [load-main, load-tenant] (default: tasks / 5)")
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--tenant-rate", default="2/s", help="each tenant's limit (burst 1)")
    parser.add_argument("--tenant-order", choices=("batched", "spread"), default="batched",
                        help="batched: a tenant's tasks enqueued together (its bucket binds); "
                             "spread: the tenants in turn (its bucket hardly ever binds)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--cluster", action="store_true",
                        help="the store is a 3-master Redis Cluster (the broker stays plain)")
    parser.add_argument("--idle-timeout", type=float, default=60.0,
                        help="longest wait for every store key to expire")
    parser.add_argument("--timeout", type=float, default=None,
                        help="longest wait for every task to start (default: 3 x tasks/rate "
                             "+ 60 s, at least 120 s)")
    parser.add_argument("--grace", type=float, default=2.0,
                        help="seconds to watch for duplicate starts after the last one")
    parser.add_argument("--residue-kb", type=int, default=16,
                        help="how close to its baseline used_memory must come back")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--save-starts", metavar="PATH",
                        help="also write every recorded start (JSON) to PATH")
    args = parser.parse_args()
    result = run(args)
    found = problems(result)
    result["problems"] = found
    print(json.dumps(result, indent=2) if args.json else render(result))
    if found:
        print("load: " + "; ".join(found), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
