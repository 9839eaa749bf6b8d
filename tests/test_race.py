"""Many processes on one bucket: exactly the tokens it holds are granted, no more, no fewer."""

from __future__ import annotations

import multiprocessing

import redis

from taskthrottle import Throttle
from taskthrottle._procs import RedisServer


def _hammer(port: int, attempts: int, start: multiprocessing.synchronize.Event,  # type: ignore[name-defined]
            out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    client = redis.Redis(port=port)
    throttle = Throttle("race", "1/d", burst=100)  # 100 tokens, none refill during the test
    start.wait()
    out.put(sum(throttle.acquire(redis=client).granted for _ in range(attempts)))


def test_eight_processes_share_exactly_the_burst(server: RedisServer, r: redis.Redis) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(server.port, 200, start, out)) for _ in range(8)]
    for p in procs:
        p.start()
    start.set()
    granted = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    assert 100 == sum(granted)
    assert [0] * 8 == [p.exitcode for p in procs]
