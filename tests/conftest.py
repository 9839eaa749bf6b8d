"""A real redis-server on a free loopback port for the whole session (never 6379)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
import redis

from taskthrottle import config
from taskthrottle._procs import RedisServer

pytest_plugins = ["taskthrottle.testing"]

TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)


@pytest.fixture(scope="session")
def server(taskthrottle_redis_server: RedisServer) -> RedisServer:
    return taskthrottle_redis_server


@pytest.fixture
def r(taskthrottle_redis: redis.Redis) -> redis.Redis:
    """db 0 of the session server, flushed before the test."""
    return taskthrottle_redis


@pytest.fixture
def rec(server: RedisServer, r: redis.Redis) -> redis.Redis:
    """db 2, where fleet tasks record what they saw (timed by its TIME), emptied; ``r``, the
    throttle store, is flushed too."""
    client = server.client(2)
    client.flushdb()
    return client


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    yield
    config.forget()
