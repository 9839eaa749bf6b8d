"""pytest fixtures for testing your own throttled tasks against a real Redis.

Enable them in your ``conftest.py``::

    pytest_plugins = ["taskthrottle.testing"]

Fixtures:
    taskthrottle_redis_server: a ``redis-server`` on a free loopback port for the session
        (``redis-server`` from ``PATH``, else the one bundled by ``taskthrottle[demo]``).
    taskthrottle_redis: a client on db 0 of that server, flushed before each test.
    taskthrottle_url: the ``redis://`` URL of that db, for ``taskthrottle_redis_url``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from ._procs import RedisServer, WorkerFleet, free_port

__all__ = ["RedisServer", "WorkerFleet", "free_port", "max_in_window"]


def max_in_window(times_us: list[int], window_us: int) -> int:
    """Most timestamps in any closed window of ``window_us`` (both in the same unit)."""
    import bisect

    ordered = sorted(times_us)
    return max(
        (bisect.bisect_right(ordered, t + window_us) - i for i, t in enumerate(ordered)),
        default=0,
    )


@pytest.fixture(scope="session")
def taskthrottle_redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def taskthrottle_redis(taskthrottle_redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = taskthrottle_redis_server.client(0)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def taskthrottle_url(taskthrottle_redis_server: RedisServer,
                     taskthrottle_redis: redis.Redis) -> str:
    return taskthrottle_redis_server.url(0)
