"""The concurrency leases this process holds for its running tasks.

A lease is taken by the admission decision; this module remembers it until the task ends, renews
it from one daemon thread (every third of the shortest lease), and gives it back when the hooks
say the task is over (success, failure, retry, ignore, revoke) or the process shuts down. A
process that dies without saying so loses nothing but time: its leases lapse on their own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from .exceptions import BackendError
from .throttle import Throttle

logger = logging.getLogger("taskthrottle")


@dataclass(frozen=True, slots=True)
class Held:
    """One lease: whose it is and where it lives."""

    throttle: Throttle
    key: object
    lease: str
    client: Any
    prefix: str

    def release(self) -> bool:
        return self.throttle.release(self.lease, key=self.key, redis=self.client,
                                     prefix=self.prefix)

    def renew(self) -> int:
        return self.throttle.renew(self.lease, key=self.key, redis=self.client,
                                   prefix=self.prefix)


_lock = threading.Lock()
_held: dict[str, list[Held]] = {}
# The renewal in flight (by id of the Held): a release waits for it to return, else the
# renewal could re-take (as "lapsed") a lease released while its call was on the wire.
_renewing: set[int] = set()
_renewed = threading.Condition(_lock)
_wake = threading.Event()
_renewer: tuple[int, threading.Thread] | None = None


def hold(task_id: str, leases: list[Held]) -> None:
    """Remember the leases of a task that is about to run, and keep them renewed."""
    global _renewer
    if not leases:
        return
    with _lock:
        _held.setdefault(task_id, []).extend(leases)
        if _renewer is None or _renewer[0] != os.getpid() or not _renewer[1].is_alive():
            thread = threading.Thread(target=_renew_forever, name="taskthrottle-leases",
                                      daemon=True)
            _renewer = (os.getpid(), thread)
            thread.start()
    _wake.set()


def release(task_id: str) -> int:
    """Give back the leases of a task that ended; returns how many were still held."""
    with _lock:
        leases = _held.pop(task_id, [])
        _wait_for_renewals(leases)
    return sum(_quietly(held.release, held) for held in leases)


def release_all() -> int:
    """Give back every lease of this process (it is shutting down)."""
    with _lock:
        leases = [held for group in _held.values() for held in group]
        _held.clear()
        _wait_for_renewals(leases)
    return sum(_quietly(held.release, held) for held in leases)


def _wait_for_renewals(leases: list[Held]) -> None:
    """(Under ``_lock``.) Until no renewal of ``leases`` is on the wire (one round trip, at
    most the socket timeout); they are out of the registry, so none starts again."""
    while any(id(held) in _renewing for held in leases):
        _renewed.wait()


def forget() -> None:
    """After a fork: the parent's leases and renewal thread are not this process's."""
    global _renewer
    with _lock:
        _held.clear()
        _renewing.clear()
        _renewer = None


def held() -> dict[str, list[Held]]:
    """A copy of what this process holds (for tests and metrics)."""
    with _lock:
        return {task_id: list(group) for task_id, group in _held.items()}


def _quietly(call: Any, held: Held) -> bool:
    try:
        return bool(call())
    except BackendError as exc:  # the lease lapses on its own; say so and go on
        logger.warning("taskthrottle: lease %s of %r not released (%s); it lapses in %.0f s",
                       held.lease, held.throttle.name, exc, held.throttle.lease)
        return False


def _renew_forever() -> None:
    """Renew every held lease once a third of its length has passed (woken early when a
    shorter lease arrives)."""
    pid = os.getpid()
    last = time.monotonic()
    while True:
        with _lock:
            if _renewer is None or _renewer[0] != pid:
                return
            period = min((h.throttle.lease for group in _held.values() for h in group),
                         default=60.0) / 3
        _wake.wait(max(0.0, last + period - time.monotonic()))
        _wake.clear()
        if time.monotonic() < last + period:
            continue  # woken by a new lease: recompute the period
        last = time.monotonic()
        with _lock:
            leases = [(task_id, h) for task_id, group in _held.items() for h in group]
        for task_id, h in leases:
            with _lock:
                still = h in _held.get(task_id, ())
                if still:
                    _renewing.add(id(h))
            if not still:
                continue
            try:
                held = h.renew()
            except BackendError as exc:
                logger.warning("taskthrottle: lease of task %s on %r not renewed (%s); it "
                               "lapses in at most %.0f s", task_id, h.throttle.name, exc,
                               h.throttle.lease)
                continue
            finally:
                with _lock:
                    _renewing.discard(id(h))
                    _renewed.notify_all()
            if held == 2:
                logger.warning("taskthrottle: task %s had lost its lease on %r (not renewed "
                               "in time) and took it back", task_id, h.throttle.name)
            elif held == 0:
                logger.error("taskthrottle: task %s lost its lease on %r (not renewed in time: "
                             "the store was away or the process held the GIL longer than the "
                             "lease) and the cap is full: it runs beyond the cap; make the "
                             "lease longer", task_id, h.throttle.name)
