"""Receivers on Celery's signals for the lifecycle around a throttled task.

They observe and tidy up; they never decide (a signal receiver cannot stop a task: Celery logs
and swallows its exceptions), which is why admission lives in ``ThrottledTask.before_start``.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from . import config


def _fresh_connections_after_fork(**_: Any) -> None:
    """A prefork child must not reuse its parent's Redis sockets: drop every cached client."""
    config.forget()


worker_process_init.connect(_fresh_connections_after_fork, weak=False)
