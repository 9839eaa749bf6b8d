"""Decisions per second in one process, side by side, on one throwaway redis-server.

    python bench/decisions.py [--n 800] [--rounds 30] [--window 10000] [--json]

Contenders (same Redis, same client settings). This machine's round trips wander by ±30 %
from second to second, so the contenders run in short interleaved rounds and each is compared
with the bare EVALSHA of the same round; the table gives the median over the rounds.
  bare EVALSHA           redis-py ``evalsha`` of ``return 1``: the floor of any one-script decision
  taskthrottle N bucket  ``Throttle.acquire`` as ``ThrottledTask`` calls it (reserve, inline
                         wait) on a throttle of 1, 2 or 3 token buckets, generous enough that
                         every call is a grant that writes (the common case)
  taskthrottle exact     the same call on one exact sliding window (``Limit(..., exact=True)``):
                         a sorted set, refilled to ``--window`` entries before every round, so it
                         holds ``window`` to ``window + n`` entries while it is timed
  limits/*               the ``limits`` library's Redis strategies, ``hit()``
Ratios are against bare EVALSHA and against the fastest ``limits`` strategy; "server µs" is
Redis's own time per EVALSHA (``INFO commandstats``), round trip excluded.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from statistics import median

import redis
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)

from taskthrottle import Limit, Throttle
from taskthrottle._procs import RedisServer

ANCHOR = "bare EVALSHA"
# Generous enough that every decision is a grant that writes; distinct intervals (1, 2, 4 µs),
# so each limit is its own entry in the bucket's state string.
BUCKETS = ("1000000/s", "30000000/m", "900000000/h")
EXACT = "1000000/h"  # the most an exact window may count: it never fills during a run


def evalsha_stats(client: redis.Redis) -> tuple[int, int]:
    """Calls and microseconds Redis has spent in EVALSHA so far."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def rate(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=800, help="decisions per round")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--window", type=int, default=10_000,
                        help="entries in the exact window's sorted set at the start of a round")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    if args.window + args.n * 2 > 1_000_000:
        parser.error("--window + 2 * --n must stay below the window's count (1,000,000)")

    with RedisServer() as server:
        client = redis.Redis(port=server.port)
        redis_version = client.info("server")["redis_version"]
        trivial = client.register_script("return 1")
        buckets = [Throttle("bench" if k == 1 else f"bench-{k}", *BUCKETS[:k], burst=1_000_000)
                   for k in (1, 2, 3)]
        exact_limit = Limit(EXACT, exact=True)
        exact = Throttle("bench-exact", exact_limit)
        # "<bucket>:w<period_us>" as acquire.lua names it (the spec's period, guard included)
        window_key = f"{exact.redis_key()}:{exact_limit.spec.split(':')[0]}"
        storage = RedisStorage(f"redis://127.0.0.1:{server.port}/0")
        item = RateLimitItemPerSecond(1_000_000)
        fixed = FixedWindowRateLimiter(storage)
        moving = MovingWindowRateLimiter(storage)
        sliding = SlidingWindowCounterRateLimiter(storage)

        def acquire(throttle: Throttle) -> Callable[[], object]:
            return lambda: throttle.acquire(
                redis=client, reserve=True, max_delay=300.0, max_inline_wait=0.25)

        contenders: dict[str, Callable[[], object]] = {
            ANCHOR: lambda: trivial(client=client),
            "taskthrottle 1 bucket": acquire(buckets[0]),
            "taskthrottle 2 buckets": acquire(buckets[1]),
            "taskthrottle 3 buckets": acquire(buckets[2]),
            "taskthrottle exact window": acquire(exact),
            "limits fixed-window": lambda: fixed.hit(item, "bench"),
            "limits moving-window": lambda: moving.hit(item, "bench-mw"),
            "limits sliding-window-counter": lambda: sliding.hit(item, "bench-swc"),
        }

        def refill_window() -> None:
            """Back to ``--window`` entries: the oldest are kept, this round's are dropped."""
            if args.window == 0:
                client.delete(window_key)
                return
            have = client.zcard(window_key)
            if have > args.window:
                client.zremrangebyrank(window_key, args.window, -1)
            elif have < args.window:
                seconds, micros = client.time()
                now = seconds * 1_000_000 + micros
                pipe = client.pipeline(transaction=False)
                for start in range(have, args.window, 5_000):
                    stop = min(start + 5_000, args.window)
                    pipe.zadd(window_key, {f"p{i}": now for i in range(start, stop)})
                pipe.pexpire(window_key, round(exact_limit.rate.period * 1000))
                pipe.execute()

        resets: dict[str, Callable[[], object]] = {
            "taskthrottle exact window": refill_window,
            # keep its log from growing
            "limits moving-window": lambda: client.delete(*client.keys("*bench-mw*")),
        }

        for fn in contenders.values():  # warm up: scripts loaded, connections open
            rate(fn, 500)
        for reset in resets.values():
            reset()
        encoding = b""
        rounds: list[dict[str, float]] = []
        window_sizes: list[int] = []
        server = {name: [0, 0] for name in contenders}  # EVALSHA calls, µs
        for i in range(args.rounds):
            order = list(contenders) if i % 2 == 0 else list(reversed(contenders))
            measured = {}
            for name in order:
                calls, usec = evalsha_stats(client)
                measured[name] = rate(contenders[name], args.n)
                calls_after, usec_after = evalsha_stats(client)
                server[name][0] += calls_after - calls
                server[name][1] += usec_after - usec
                if name == "taskthrottle exact window":
                    window_sizes.append(client.zcard(window_key))
                    encoding = encoding or client.object("encoding", window_key)
                if name in resets:
                    resets[name]()
            rounds.append(measured)

    limits_names = [k for k in contenders if k.startswith("limits")]
    fastest = max(limits_names, key=lambda k: median(r[k] for r in rounds))
    results = {
        name: {
            "decisions_per_s": round(median(r[name] for r in rounds)),
            "vs_evalsha": round(median(r[name] / r[ANCHOR] for r in rounds), 3),
            "vs_best_limits": round(median(r[name] / r[fastest] for r in rounds), 3),
            "server_us_per_decision": round(server[name][1] / max(server[name][0], 1), 2),
        }
        for name in contenders
    }
    window = {
        "limit": str(exact_limit), "key": window_key, "encoding": encoding.decode(),
        "entries_at_round_start": args.window,
        "entries_at_round_end": [min(window_sizes), max(window_sizes)],
    }
    if args.json:
        print(json.dumps({
            "redis_version": redis_version, "rounds": args.rounds, "n": args.n,
            "fastest_limits": fastest, "buckets": list(BUCKETS), "exact_window": window,
            "contenders": results,
            "per_round": [{k: round(v) for k, v in r.items()} for r in rounds],
        }, indent=2))
        return
    print(f"decisions/s in one process: median of {args.rounds} interleaved rounds of {args.n}; "
          f"ratios are medians of same-round ratios (fastest limits strategy: {fastest}; "
          f"redis {redis_version})")
    print(f"{'contender':32}{'decisions/s':>14}{'vs EVALSHA':>12}{'vs best limits':>16}"
          f"{'server µs':>11}")
    for name, result in results.items():
        print(f"{name:32}{result['decisions_per_s']:>14,}{result['vs_evalsha']:>12.2f}"
              f"{result['vs_best_limits']:>16.2f}{result['server_us_per_decision']:>11.1f}")
    high = max(window_sizes)
    print(f"buckets: {', '.join(BUCKETS)} (1, 2, 3 of them), burst 1,000,000: always granted")
    print(f"exact window: {exact_limit} (never full), a sorted set ({encoding.decode()}) of "
          f"{args.window:,} to {high:,} entries while timed; limits moving-window: a list of "
          f"0 to {args.n:,}, emptied between rounds")


if __name__ == "__main__":
    main()
