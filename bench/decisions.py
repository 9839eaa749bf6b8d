"""Decisions per second in one process, side by side, on one throwaway redis-server.

    python bench/decisions.py [--n 1000] [--rounds 40]

Contenders (same Redis, same client settings). This machine's round trips wander by ±30 %
from second to second, so the contenders run in short interleaved rounds and each is compared
with the bare EVALSHA of the same round; the table gives the median over the rounds.
  bare EVALSHA    redis-py ``evalsha`` of ``return 1``: the floor of any one-script decision
  taskthrottle    ``Throttle.acquire`` as ``ThrottledTask`` calls it (reserve, inline wait)
  limits/*        the ``limits`` library's Redis strategies, ``hit()``
Ratios are against bare EVALSHA and against the fastest ``limits`` strategy.
"""

from __future__ import annotations

import argparse
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

from taskthrottle import Throttle
from taskthrottle._procs import RedisServer


def rate(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000, help="decisions per round")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    with RedisServer() as server:
        client = redis.Redis(port=server.port)
        trivial = client.register_script("return 1")
        # Generous enough that every decision is a grant that writes (the common case).
        throttle = Throttle("bench", "1000000/s", burst=1_000_000)
        storage = RedisStorage(f"redis://127.0.0.1:{server.port}/0")
        item = RateLimitItemPerSecond(1_000_000)
        fixed = FixedWindowRateLimiter(storage)
        moving = MovingWindowRateLimiter(storage)
        sliding = SlidingWindowCounterRateLimiter(storage)
        contenders: dict[str, Callable[[], object]] = {
            "bare EVALSHA": lambda: trivial(client=client),
            "taskthrottle acquire": lambda: throttle.acquire(
                redis=client, reserve=True, max_delay=300.0, max_inline_wait=0.25),
            "limits fixed-window": lambda: fixed.hit(item, "bench"),
            "limits moving-window": lambda: moving.hit(item, "bench-mw"),
            "limits sliding-window-counter": lambda: sliding.hit(item, "bench-swc"),
        }
        for fn in contenders.values():  # warm up: scripts loaded, connections open
            rate(fn, 500)
        rounds: list[dict[str, float]] = []
        for i in range(args.rounds):
            order = list(contenders) if i % 2 == 0 else list(reversed(contenders))
            measured = {}
            for name in order:
                measured[name] = rate(contenders[name], args.n)
                if name == "limits moving-window":
                    client.delete(*client.keys("*bench-mw*"))  # keep its log from growing
            rounds.append(measured)

    limits_names = [k for k in contenders if k.startswith("limits")]
    fastest = max(limits_names, key=lambda k: median(r[k] for r in rounds))
    print(f"decisions/s in one process: median of {args.rounds} interleaved rounds of {args.n}; "
          f"ratios are medians of same-round ratios (fastest limits strategy: {fastest})")
    print(f"{'contender':32}{'decisions/s':>14}{'vs EVALSHA':>12}{'vs best limits':>16}")
    for name in contenders:
        value = median(r[name] for r in rounds)
        vs_bare = median(r[name] / r["bare EVALSHA"] for r in rounds)
        vs_limits = median(r[name] / r[fastest] for r in rounds)
        print(f"{name:32}{value:>14,.0f}{vs_bare:>12.2f}{vs_limits:>16.2f}")


if __name__ == "__main__":
    main()
