"""taskthrottle's own signals, built on Celery's ``Signal``; named for what happened.

Receivers run in the worker process that made the decision; like Celery's signals, an exception
in a receiver is logged and swallowed, so a receiver can observe a decision but never change it.
"""

from __future__ import annotations

from collections import Counter

from celery.utils.dispatch import Signal

#: A task was deferred. Sent with ``sender`` (the task), ``task_id``, ``throttle`` (its name),
#: ``reason`` (``"reserved"``, ``"early"``, ``"gated"``, ``"horizon"``, ``"backend"``,
#: ``"busy"``, ``"paused"``, ``"misconfigured"`` or ``"stalled"``),
#: ``countdown`` (seconds until it is delivered again), ``wait`` (what the script said, or
#: ``None`` when Redis failed), ``slot`` (the reservation it carries, Redis µs, or ``None``) and
#: ``deferrals`` (how often this task has now been deferred).
task_throttled = Signal(name="task_throttled")

#: A task was admitted and its body is about to run. Sent with ``sender``, ``task_id``,
#: ``throttle``, ``deferrals`` (how often it was deferred first) and ``waited`` (seconds slept in
#: the worker to reach its start).
task_admitted = Signal(name="task_admitted")

#: A task runs unthrottled because Redis failed during its decision and its throttle's failure
#: policy is ``allow``. Sent with ``sender``, ``task_id``, ``throttle`` and ``error`` (the
#: ``BackendError``). :data:`unthrottled` counts them per throttle in this process.
task_unthrottled = Signal(name="task_unthrottled")

#: Runs let through unthrottled in this process, per throttle name.
unthrottled: Counter[str] = Counter()
