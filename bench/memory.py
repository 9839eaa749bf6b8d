"""Redis memory per idle per-key bucket and per exact-window entry, and that both expire.

    python bench/memory.py [--keys 10000] [--entries 10000] [--rate 6/m] [--window 100000/10s]
                           [--json]

On one throwaway redis-server (``INFO memory`` ``used_memory``, after a warm-up that loads the
scripts):
  per-key bucket  ``Throttle("mem-keys", RATE, key="{0}")``, one ``acquire(key=str(i))`` for each
                  of ``--keys`` keys: one state string per key, which lives until its bucket is
                  full again (``interval x cost`` after its last grant: 10 s at 6/m, 0.1 s at
                  10/s, so the rate here is slow enough for every key to outlive the fill)
  window entry    ``Throttle("mem-window", Limit(WINDOW, exact=True))``, ``--entries`` acquires:
                  one sorted-set entry each (plus one state string and the set itself), kept for
                  one period after its start
Each phase then checks that every key it made has a TTL, waits for DBSIZE 0 and compares
``used_memory`` with the baseline. Bytes per item do not depend on the period (it is in the
key's name, not in the entries); the short periods only keep the run to seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import redis

from taskthrottle import Limit, Throttle
from taskthrottle._procs import RedisServer

# used_memory must come back to within this many bytes of the baseline (allocator and dict
# bookkeeping; one idle key is ~100 bytes, 10,000 of them ~1 MB).
RESIDUE = 64 * 1024


def used_memory(client: redis.Redis) -> int:
    """INFO memory used_memory once it holds still (a server cron tick frees some buffers)."""
    last = int(client.info("memory")["used_memory"])
    for _ in range(12):
        time.sleep(0.25)
        now = int(client.info("memory")["used_memory"])
        if now == last:
            break
        last = now
    return last


def ttls(client: redis.Redis) -> list[int]:
    """PTTL of every key in the database (-1: no expiry, -2: gone since the SCAN)."""
    out: list[int] = []
    batch: list[bytes] = []
    for key in [*client.scan_iter(count=1000), None]:
        if key is not None:
            batch.append(key)
        if batch and (key is None or len(batch) == 1000):
            pipe = client.pipeline(transaction=False)
            for name in batch:
                pipe.pttl(name)
            out.extend(pipe.execute())
            batch = []
    return out


def settle(client: redis.Redis, baseline: int, since: float,
           timeout: float) -> tuple[float | None, int]:
    """Wait for DBSIZE 0 and then for used_memory near the baseline (the main dict shrinks on
    a server cron tick). Returns the seconds from ``since`` (monotonic) until DBSIZE was 0 and
    the bytes left over."""
    deadline = time.monotonic() + timeout
    while client.dbsize() and time.monotonic() < deadline:
        time.sleep(0.05)
    empty_after = time.monotonic() - since
    if client.dbsize():
        raise SystemExit(f"keys did not expire: DBSIZE {client.dbsize()} after {timeout:.0f} s")
    residue = used_memory(client) - baseline
    settle_by = time.monotonic() + 3.0
    while abs(residue) > RESIDUE and time.monotonic() < settle_by:
        residue = used_memory(client) - baseline
    return empty_after, residue


def phase(client: redis.Redis, baseline: int, count: int, fill: Callable[[], object],
          inspect: Callable[[], dict[str, Any]], expect_keys: int,
          wait: bool = True) -> dict[str, Any]:
    """Run ``fill``; measure used_memory, ``inspect`` the keys and check every TTL; then
    (``wait``) wait for the keys to go and measure again, else delete them."""
    start = time.monotonic()
    fill()
    filled = time.monotonic()
    fill_seconds = filled - start
    used = used_memory(client)
    dbsize = client.dbsize()
    if dbsize != expect_keys:
        raise SystemExit(f"{dbsize} keys after the fill ({fill_seconds:.1f} s), not "
                         f"{expect_keys}: some expired already; use a longer period")
    found = inspect()
    pttls = ttls(client)
    if len(pttls) != dbsize or min(pttls) <= 0:
        raise SystemExit(f"a key without a TTL: {sum(1 for t in pttls if t <= 0)} of {dbsize}")
    if wait:
        empty_after, residue = settle(client, baseline, filled, timeout=max(pttls) / 1000 + 10)
    else:
        client.flushdb()
        empty_after, residue = None, used_memory(client) - baseline
    return {
        "count": count, "fill_seconds": round(fill_seconds, 2), "dbsize": dbsize,
        "used_memory_delta": used - baseline, "bytes_per_item": round((used - baseline) / count, 1),
        **found, "ttl_ms_min": min(pttls), "ttl_ms_max": max(pttls),
        "empty_after_s": None if empty_after is None else round(empty_after, 2),
        "residue_bytes": residue,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys to create")
    parser.add_argument("--entries", type=int, default=10_000, help="exact-window entries")
    parser.add_argument("--rate", default="6/m", help="the per-key bucket's rate (burst 1)")
    parser.add_argument("--window", default="100000/10s", help="the exact window")
    parser.add_argument("--no-wait", action="store_true",
                        help="delete the keys instead of waiting for them to expire (for long "
                             "--rate/--window periods; the TTLs are still checked)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()

    keyed = Throttle("mem-keys", args.rate, key="{0}")
    window_limit = Limit(args.window, exact=True)
    window = Throttle("mem-window", window_limit)
    if args.entries > window_limit.capacity:
        parser.error(f"--entries {args.entries} is more than {args.window} lets in")
    # "<bucket>:w<period_us>" as acquire.lua names it (the spec's period, guard included)
    window_key = f"{window.redis_key()}:{window_limit.spec.split(':')[0]}"

    with RedisServer() as server:
        client = server.client()
        info = client.info("server")
        with contextlib.suppress(redis.ResponseError):  # Redis 7: a histogram per command
            client.config_set("latency-tracking", "no")  # (~25 KB each) would count as usage
        # Warm-up: both scripts and every command used below run once, on keys that expire.
        warm_keys = Throttle("mem-warm-keys", "1000000/s", key="{0}")
        warm_window = Throttle("mem-warm-window", Limit("1000/10ms", exact=True))
        warm_keys.acquire(key="w", redis=client)
        warm_window.acquire(redis=client)
        for name in client.keys("*"):
            client.memory_usage(name)
            client.object("encoding", name)
        client.get("none"), client.zcard("none"), ttls(client)
        time.sleep(0.1)
        while client.dbsize():
            time.sleep(0.05)
        baseline = used_memory(client)

        def fill_keys() -> None:
            for i in range(args.keys):
                keyed.acquire(key=str(i), redis=client)

        def fill_window() -> None:
            for _ in range(args.entries):
                window.acquire(redis=client)

        sample_key = keyed.redis_key(str(args.keys - 1))
        keys = phase(client, baseline, args.keys, fill_keys, lambda: {
            "sample_key": sample_key,
            "sample_memory_usage": client.memory_usage(sample_key),
            "sample_value": (client.get(sample_key) or b"").decode(),
        }, expect_keys=args.keys, wait=not args.no_wait)

        win = phase(client, baseline, args.entries, fill_window, lambda: {
            "zcard": client.zcard(window_key),
            "encoding": client.object("encoding", window_key).decode(),
            "set_memory_usage": client.memory_usage(window_key, samples=0),
            "state_memory_usage": client.memory_usage(window.redis_key()),
        }, expect_keys=2, wait=not args.no_wait)
        if win["zcard"] != args.entries:
            raise SystemExit(f"{args.entries - win['zcard']} entries left the window during the "
                             f"fill ({win['fill_seconds']} s): use a longer --window")
        win["set_bytes_per_entry"] = round(win["set_memory_usage"] / args.entries, 1)

    report = {
        "redis_version": info["redis_version"], "baseline_used_memory": baseline,
        "bucket": {"throttle": repr(keyed), **keys},
        "window": {"throttle": repr(window), **win},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"redis {info['redis_version']}; used_memory baseline {baseline:,} bytes "
          "(after the scripts are loaded)")
    print(f"{'':30}{'items':>8}{'fill s':>8}{'used_memory':>13}{'bytes/item':>12}"
          f"{'MEMORY USAGE':>15}{'TTL s min-max':>16}{'empty after s':>15}{'residue':>9}")
    rows = (
        (f"per-key bucket {args.rate}", keys, f"{keys['sample_memory_usage']} (1 key)"),
        (f"window entry {args.window}", win,
         f"{win['set_bytes_per_entry']}/entry"),
    )
    for label, r, usage in rows:
        empty = "-" if r["empty_after_s"] is None else f"{r['empty_after_s']:.1f}"
        ttl = f"{r['ttl_ms_min'] / 1000:.1f}-{r['ttl_ms_max'] / 1000:.1f}"
        print(f"{label:30}{r['count']:>8,}{r['fill_seconds']:>8.1f}"
              f"{r['used_memory_delta']:>13,}{r['bytes_per_item']:>12.1f}{usage:>15}"
              f"{ttl:>16}{empty:>15}{r['residue_bytes']:>9,}")
    print(f"per-key bucket: {keys['dbsize']:,} keys (one state string each), e.g. "
          f"{sample_key!r} = {keys['sample_value']!r}")
    print(f"exact window: {win['dbsize']} keys: a sorted set ({win['encoding']}) of "
          f"{win['zcard']:,} entries, MEMORY USAGE {win['set_memory_usage']:,}, and the state "
          f"string ({win['state_memory_usage']} bytes)")
    print("bytes/item: the used_memory growth over the items, the keyspace's and the expiry "
          "table's slots included; MEMORY USAGE: the key and value alone")
    print("every key had a TTL > 0; 'empty after': from the end of the fill to DBSIZE 0; "
          "'residue': used_memory then, minus the baseline" + (
              " (--no-wait: after FLUSHDB)" if args.no_wait else ""))


if __name__ == "__main__":
    main()
