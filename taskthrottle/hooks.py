"""Receivers on Celery's signals for the lifecycle around a throttled task.

They observe and tidy up; they never decide (a signal receiver cannot stop a task: Celery logs
and swallows its exceptions), which is why admission lives in ``ThrottledTask.before_start``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import (
    task_postrun,
    task_revoked,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from . import config, leases
from .exceptions import BackendError, ConfigurationError
from .task import ThrottledTask

logger = logging.getLogger("taskthrottle")


def _fresh_connections_after_fork(**_: Any) -> None:
    """A prefork child must not reuse its parent's Redis sockets or leases: drop them."""
    config.forget()
    leases.forget()


def _release_leases(task_id: str | None = None, **_: Any) -> None:
    """The task ended (success, failure, retry, ignore): its concurrency slots are free."""
    if task_id:
        leases.release(task_id)


def _release_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    """A revoked task (terminated in a pool process, or never started) frees its slots. This
    runs in the worker's main process, which knows the lease by the task's id."""
    if not isinstance(sender, ThrottledTask) or request is None:
        return
    release_slots(sender, request)


def release_slots(sender: Any, request: Any) -> None:
    """Give back the concurrency slots of ``request`` (a task of ``sender``) by its id, from
    whichever process knows it ended; a slot it no longer holds is left alone."""
    leases.release(request.id)  # solo and threads pools hold it here
    try:
        settings = config.load(sender.app)
        for ask in sender._asks(sender.throttles(settings), request.args, request.kwargs):
            if ask.throttle.concurrency is not None:
                ask.throttle.release(request.id, key=ask.key, redis=config.client(sender.app),
                                     prefix=settings.prefix)
    except (ConfigurationError, BackendError) as exc:  # it lapses on its own
        logger.warning("taskthrottle: revoked task %s keeps its lease until it lapses: %s",
                       request.id, exc)


def _release_all(**_: Any) -> None:
    """A pool process is shutting down: whatever it still holds goes back now, not at expiry."""
    leases.release_all()


def _release_at_worker_shutdown(sender: Any = None, **_: Any) -> None:
    """The worker is shutting down (a cold shutdown kills its pool processes): the main
    process gives back the leases of the tasks still running, by their ids."""
    leases.release_all()
    from celery.worker import state

    for request in list(state.active_requests):
        task = getattr(request, "task", None)
        if isinstance(task, ThrottledTask):
            release_slots(task, request)


def _check_settings_at_start(sender: Any = None, **_: Any) -> None:
    """Say once the worker is up (and logging to its log), loudly, what would otherwise show
    only when a task arrives."""
    app = getattr(sender, "app", None)
    if app is None:
        return
    throttled = [name for name, task in app.tasks.items()
                 if isinstance(task, ThrottledTask) and task.throttles()]
    if not throttled and not app.conf.get("taskthrottle_throttles"):
        return
    try:
        settings = config.load(app)
        throttled += [name for name, task in app.tasks.items()
                      if isinstance(task, ThrottledTask) and name not in throttled
                      and task.throttles(settings)]
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
task_postrun.connect(_release_leases, weak=False)
task_revoked.connect(_release_revoked, weak=False)
worker_process_shutdown.connect(_release_all, weak=False)
worker_shutdown.connect(_release_at_worker_shutdown, weak=False)
