"""The worker-side request of a throttled task: what the worker's main process does when a
pool process dies under the task.

A prefork child killed mid-task (the kernel's OOM killer, a SIGKILL, a segfault in an
extension) cannot release its concurrency slots itself, and no signal reaches the main process
for it when the message is requeued (``acks_late`` with ``reject_on_worker_lost``). The main
process knows the task, though: it gives the slots back before Celery records the failure or
requeues the message, so the slot is free at once instead of when its lease lapses. (A worker
killed whole, main process too, still frees its slots when the leases lapse.)

A pool process that dies after it published a task's deferral but before its delivery was
acknowledged would otherwise leave the task twice (``acks_late``: the original requeued beside
the deferred copy) or failed while it still runs (errbacks fired, then the copy succeeds). The
deferral records its hand-off in Redis; the main process reads it and ends the dead delivery
as handed off.

``ThrottledTask.Request`` names this class; a task that needs its own request class should
subclass this one.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.worker.request import Request
from celery.worker.state import task_ready

from .hooks import release_slots
from .task import handed_off

logger = logging.getLogger("taskthrottle")


class ThrottledRequest(Request):  # type: ignore[misc]  # Celery ships no type information
    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> Any:
        exc = getattr(exc_info, "exception", None)
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        # The pool process is gone (billiard reports some exits as SystemExit before the
        # process has terminated): whatever it held, nobody else will give back.
        if isinstance(exc, (WorkerLostError, SystemExit, KeyboardInterrupt)):
            release_slots(self.task, self)
            if handed_off(self.task.app, self._context):
                # It died after publishing its deferral: the task lives on in that message.
                # End this delivery as Celery ends an ignored one (no requeue, no failure).
                logger.info("%s[%s]: its process died after deferring it; the deferred "
                            "message carries it on", self.task.name, self.id)
                task_ready(self)
                return self.acknowledge()
        return super().on_failure(exc_info, send_failed_event=send_failed_event,
                                  return_ok=return_ok)
