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


worker_process_init.connect(_fresh_connections_after_fork, weak=False)
worker_ready.connect(_check_settings_at_start, weak=False)
