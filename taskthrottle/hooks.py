"""Receivers on Celery's signals for the lifecycle around a throttled task.

They observe and tidy up; they never decide (a signal receiver cannot stop a task: Celery logs
and swallows its exceptions), which is why admission lives in ``ThrottledTask.before_start``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init, worker_ready

from . import config
from .exceptions import ConfigurationError
from .task import ThrottledTask
from .throttle import Throttle

logger = logging.getLogger("taskthrottle")


def _fresh_connections_after_fork(**_: Any) -> None:
    """A prefork child must not reuse its parent's Redis sockets: drop every cached client."""
    config.forget()


def _check_settings_at_start(sender: Any = None, **_: Any) -> None:
    """Say once the worker is up (and logging to its log), loudly, what would otherwise show
    only when a task arrives."""
    app = getattr(sender, "app", None)
    if app is None:
        return
    throttled = [name for name, task in app.tasks.items()
                 if isinstance(task, ThrottledTask) and isinstance(task.throttle, Throttle)]
    if not throttled:
        return
    try:
        config.load(app)
    except ConfigurationError as exc:
        logger.error("taskthrottle: %s; throttled tasks (%s) will be handed back, not run, "
                     "until this is fixed", exc, ", ".join(sorted(throttled)))
        return
    _warn_if_store_evicts(config.client(app))


def _warn_if_store_evicts(client: Any) -> None:
    """A bucket evicted under memory pressure is a full bucket: the limit silently lapses."""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "noeviction")
        maxmemory = int(client.config_get("maxmemory").get("maxmemory", 0))
    except Exception:  # CONFIG may be disabled, or Redis down: then there is nothing to say
        return
    if maxmemory and policy != "noeviction":
        logger.warning(
            "taskthrottle: the throttle store evicts keys under memory pressure "
            "(maxmemory-policy %s); an evicted bucket lets a burst through. Use a store with "
            "maxmemory-policy noeviction.", policy)


worker_process_init.connect(_fresh_connections_after_fork, weak=False)
worker_ready.connect(_check_settings_at_start, weak=False)
