"""The worker-side request of a throttled task: what the worker's main process does when a
pool process dies under the task.

A prefork child killed mid-task (the kernel's OOM killer, a SIGKILL, a segfault in an
extension) cannot release its concurrency slots itself, and no signal reaches the main process
for it when the message is requeued (``acks_late`` with ``reject_on_worker_lost``). The main
process knows the task, though: it gives the slots back before Celery records the failure or
requeues the message, so the slot is free at once instead of when its lease lapses. (A worker
killed whole, main process too, still frees its slots when the leases lapse.)

``ThrottledTask.Request`` names this class; a task that needs its own request class should
subclass this one.
"""

from __future__ import annotations

from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.worker.request import Request

from .hooks import release_slots


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
        return super().on_failure(exc_info, send_failed_event=send_failed_event,
                                  return_ok=return_ok)
