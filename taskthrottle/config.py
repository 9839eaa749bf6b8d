"""``taskthrottle_*`` settings read from ``app.conf``, validated once and cached per app.

Also holds the per-process Redis client of each app: created on first use, dropped after a
fork (a connection must never be shared by two processes).
"""

from __future__ import annotations

import fnmatch
import math
import os
import threading
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import redis
from redis.exceptions import RedisClusterException

from . import store
from .exceptions import BackendError, ConfigurationError
from .throttle import DEFAULT_PREFIX, ON_ERROR, Limit, Throttle

#: The Redis broker re-delivers an unacknowledged message after this long (kombu's default);
#: a deferred task waits unacknowledged in a worker, so no countdown may come near it.
REDIS_VISIBILITY_TIMEOUT = 3600.0
#: RabbitMQ closes the channel of a consumer that holds a delivery unacknowledged this long
#: (its default ``consumer_timeout``); a deferred task waits unacknowledged in a worker.
RABBITMQ_CONSUMER_TIMEOUT = 1800.0


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated settings of one app (see the README's settings table)."""

    redis_url: str
    prefix: str
    max_delay: float
    max_inline_wait: float
    backoff: float
    backoff_max: float
    socket_timeout: float
    busy_delay: float = 1.0
    on_backend_error: str = "defer"
    #: ``taskthrottle_throttles``: (task name or glob, its throttles), in the order given.
    by_name: tuple[tuple[str, tuple[Throttle, ...]], ...] = ()

    def throttles_for(self, task_name: str) -> tuple[Throttle, ...]:
        """The throttles the settings give a task: its exact name first, else the first glob."""
        for pattern, throttles in self.by_name:
            if pattern == task_name:
                return throttles
        for pattern, throttles in self.by_name:
            if fnmatch.fnmatchcase(task_name, pattern):
                return throttles
        return ()


_DEFAULTS: dict[str, Any] = {
    "taskthrottle_prefix": DEFAULT_PREFIX,
    "taskthrottle_max_delay": 300.0,
    "taskthrottle_max_inline_wait": 0.25,
    "taskthrottle_backoff": 1.0,
    "taskthrottle_backoff_max": 60.0,
    "taskthrottle_socket_timeout": 2.0,
    "taskthrottle_busy_delay": 1.0,
    "taskthrottle_on_backend_error": "defer",
    "taskthrottle_broker_consumer_timeout": RABBITMQ_CONSUMER_TIMEOUT,
}
_THROTTLE_OPTIONS = frozenset({"name", "limits", "burst", "concurrency", "lease", "key",
                               "on_error"})

_lock = threading.Lock()
_settings: WeakKeyDictionary[Any, Settings] = WeakKeyDictionary()
_clients: WeakKeyDictionary[Any, tuple[int, Any]] = WeakKeyDictionary()


def _is_redis_url(url: object) -> bool:
    return store.is_store_url(url)


_redact = store.redact


def _seconds(conf: Any, name: str, *, minimum: float, allow_zero: bool = False) -> float:
    value = conf.get(name, _DEFAULTS[name])
    ok = (
        not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        and (value >= minimum if allow_zero else value > minimum)
    )
    if not ok:
        bound = f">= {minimum}" if allow_zero else f"> {minimum}"
        raise ConfigurationError(
            f"setting {name}: invalid value {value!r}: expected a number of seconds {bound}",
            value=value, owner=name,
        )
    return float(value)


def _visibility_timeout(app: Any) -> float | None:
    """The broker's visibility timeout when the broker is Redis (None for other brokers)."""
    broker = app.conf.broker_url or ""
    if not _is_redis_url(broker) and not str(broker).startswith("sentinel://"):
        return None
    options = app.conf.broker_transport_options or {}
    value = options.get("visibility_timeout", REDIS_VISIBILITY_TIMEOUT)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"setting broker_transport_options: visibility_timeout {value!r} is not a number",
            value=value, owner="broker_transport_options",
        ) from None


def _consumer_timeout(app: Any) -> float | None:
    """How long an AMQP broker lets a worker hold a delivered message unacknowledged (None
    for other brokers): RabbitMQ's ``consumer_timeout``, 30 minutes unless configured."""
    broker = str(app.conf.broker_url or "")
    if not broker.startswith(("amqp://", "amqps://", "pyamqp://")):
        return None
    return _seconds(app.conf, "taskthrottle_broker_consumer_timeout", minimum=0)


def load(app: Any) -> Settings:
    """Read and validate the settings of ``app`` (cached until :func:`forget`)."""
    cached = _settings.get(app)
    if cached is not None:
        return cached
    conf = app.conf
    url = conf.get("taskthrottle_redis_url")
    if url is None:
        url = conf.broker_url
        if not _is_redis_url(url):
            raise ConfigurationError(
                "setting taskthrottle_redis_url is not set and the broker is not Redis "
                f"({url!r}): set it to the redis:// URL of the throttle store",
                value=url, owner="taskthrottle_redis_url",
            )
    elif not _is_redis_url(url):
        raise ConfigurationError(
            f"setting taskthrottle_redis_url: invalid value {_redact(url)!r}: expected a redis://, "
            "rediss://, unix://, redis+cluster:// or redis+sentinel:// URL", value=url,
            owner="taskthrottle_redis_url",
        )
    try:
        store.check(url)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"setting taskthrottle_redis_url: invalid value {_redact(url)!r}: {exc}",
            value=url, owner="taskthrottle_redis_url",
        ) from None
    prefix = conf.get("taskthrottle_prefix", DEFAULT_PREFIX)
    if not isinstance(prefix, str) or "{" in prefix or "}" in prefix:
        raise ConfigurationError(
            f"setting taskthrottle_prefix: invalid value {prefix!r}: expected a string "
            "without '{' or '}'", value=prefix, owner="taskthrottle_prefix",
        )
    max_delay = _seconds(conf, "taskthrottle_max_delay", minimum=0)
    visibility = _visibility_timeout(app)
    if visibility is not None and max_delay >= visibility:
        raise ConfigurationError(
            f"setting taskthrottle_max_delay: {max_delay} s is not below the Redis broker's "
            f"visibility_timeout ({visibility} s): a deferred task would be delivered twice",
            value=max_delay, owner="taskthrottle_max_delay",
        )
    consumer = _consumer_timeout(app)
    if consumer is not None and max_delay >= consumer:
        raise ConfigurationError(
            f"setting taskthrottle_max_delay: {max_delay} s is not below the AMQP broker's "
            f"consumer timeout ({consumer} s, RabbitMQ's consumer_timeout; set "
            "taskthrottle_broker_consumer_timeout if yours differs): the broker would close "
            "the channel of a worker holding a deferred task", value=max_delay,
            owner="taskthrottle_max_delay")
    inline = _seconds(conf, "taskthrottle_max_inline_wait", minimum=0, allow_zero=True)
    if inline > max_delay:
        raise ConfigurationError(
            f"setting taskthrottle_max_inline_wait: {inline} s exceeds taskthrottle_max_delay",
            value=inline, owner="taskthrottle_max_inline_wait",
        )
    backoff = _seconds(conf, "taskthrottle_backoff", minimum=0)
    on_error = conf.get("taskthrottle_on_backend_error", "defer")
    if on_error not in ON_ERROR:
        raise ConfigurationError(
            f"setting taskthrottle_on_backend_error: invalid value {on_error!r}: expected one "
            f"of {', '.join(ON_ERROR)}", value=on_error, owner="taskthrottle_on_backend_error")
    settings = Settings(
        redis_url=url,
        prefix=prefix,
        max_delay=max_delay,
        max_inline_wait=inline,
        backoff=min(backoff, max_delay),
        backoff_max=min(_seconds(conf, "taskthrottle_backoff_max", minimum=0), max_delay),
        socket_timeout=_seconds(conf, "taskthrottle_socket_timeout", minimum=0),
        busy_delay=_seconds(conf, "taskthrottle_busy_delay", minimum=0),
        on_backend_error=on_error,
        by_name=_throttles_by_name(conf.get("taskthrottle_throttles") or {}),
    )
    with _lock:
        _settings[app] = settings
    return settings


def _throttles_by_name(value: object) -> tuple[tuple[str, tuple[Throttle, ...]], ...]:
    """``taskthrottle_throttles``: ``{task name or glob: throttle}``, where a throttle is a
    :class:`Throttle`, a limit (``"10/s"``), a list of limits or of throttles, or a dict of
    :class:`Throttle`'s arguments (``limits``, ``burst``, ``concurrency``, ``lease``, ``key``,
    ``name``; the name defaults to the pattern)."""
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"setting taskthrottle_throttles: expected a dict of task name or glob to "
            f"throttle, not {value!r}", value=value, owner="taskthrottle_throttles")
    found = []
    for pattern, spec in value.items():
        owner = f"setting taskthrottle_throttles[{pattern!r}]"
        try:
            if not isinstance(pattern, str) or not pattern:
                raise ConfigurationError("the pattern must be a task name or glob", value=pattern)
            found.append((pattern, _throttles_of(pattern, spec)))
        except (ConfigurationError, TypeError) as exc:  # TypeError: an unknown option
            raise ConfigurationError(f"{owner}: {exc}", value=spec, owner=owner) from None
    return tuple(found)


def _throttles_of(pattern: str, spec: object) -> tuple[Throttle, ...]:
    if isinstance(spec, Throttle):
        return (spec,)
    if isinstance(spec, (str, int, float, Limit)) and not isinstance(spec, bool):
        return (Throttle(pattern, spec),)
    if isinstance(spec, (list, tuple)) and spec:
        if all(isinstance(item, Throttle) for item in spec):
            return tuple(spec)
        if not any(isinstance(item, Throttle) for item in spec):
            return (Throttle(pattern, *spec),)
    if isinstance(spec, dict) and set(spec) <= _THROTTLE_OPTIONS:
        options = dict(spec)
        limits = options.pop("limits", ())
        if isinstance(limits, (str, int, float, Limit)) and not isinstance(limits, bool):
            limits = (limits,)
        elif not isinstance(limits, (list, tuple)):
            raise ConfigurationError(
                f"limits must be a limit such as '10/s' or a list of them, not {limits!r}",
                value=limits)
        return (Throttle(options.pop("name", pattern), *limits, **options),)
    raise ConfigurationError(
        f"expected a Throttle, a limit such as '10/s', a list of either, or a dict of "
        f"{sorted(_THROTTLE_OPTIONS)}, not {spec!r}", value=spec)


def client(app: Any) -> Any:
    """The Redis client of ``app`` for this process (a new one after a fork)."""
    pid = os.getpid()
    entry = _clients.get(app)
    if entry is not None and entry[0] == pid:
        return entry[1]
    settings = load(app)
    with _lock:
        entry = _clients.get(app)
        if entry is None or entry[0] != pid:
            try:
                made = store.client(settings.redis_url, settings.socket_timeout)
            except (redis.RedisError, RedisClusterException, OSError, ValueError) as exc:
                # A cluster client finds its nodes when it is made: an outage, not a bug.
                raise BackendError(f"throttle store {_redact(settings.redis_url)!r}: {exc}",
                                   throttle="") from exc
            entry = (pid, made)
            _clients[app] = entry
    return entry[1]


def forget(app: Any | None = None) -> None:
    """Drop cached settings and clients (of one app, or all): after a fork or a config change.

    Connections inherited across a fork are abandoned, not closed: closing would disturb the
    parent, which still owns them.
    """
    with _lock:
        for cache in (_settings, _clients):
            if app is None:
                cache.clear()
            else:
                cache.pop(app, None)
