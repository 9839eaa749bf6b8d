"""``ThrottledTask``: how Celery is adapted to the admission contract in ``throttle.py``.

``before_start`` asks the throttle; a denied task is re-published with a countdown (same id,
arguments, links, chain, chord, headers; ``retries`` untouched) and the current delivery ends
with ``Ignore``. Nothing else happens here.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import redis
from celery import Task
from celery.exceptions import Ignore

from . import config
from .exceptions import BackendError, ConfigurationError
from .rate import Rate
from .signals import task_admitted, task_throttled
from .throttle import Decision, Outcome, Throttle

logger = logging.getLogger("taskthrottle")

#: Message headers taskthrottle adds to a deferred task (plain integers, any serializer).
HEADER_SLOT = "taskthrottle_slot"
HEADER_DEFERRALS = "taskthrottle_deferrals"
HEADER_FAILURES = "taskthrottle_failures"
_OUR_HEADERS = (HEADER_SLOT, HEADER_DEFERRALS, HEADER_FAILURES)

#: Countdown (before jitter) of a task that a worker with invalid settings hands back.
_MISCONFIGURED_DELAY = 60.0
#: Claims in one delivery before a repeatedly stalling process hands the task back.
_MAX_RECLAIMS = 3
#: A round trip to the store longer than this counts as a stall (a process frozen mid-call).
_ROUND_TRIP_ALLOWANCE = 0.5


@dataclass(frozen=True, slots=True)
class _Carried:
    """What a deferred task carries in its headers from one delivery to the next."""

    slot: int | None
    deferrals: int
    failures: int

    @classmethod
    def from_request(cls, request: Any) -> _Carried:
        headers = request.headers or {}

        def number(name: str) -> int:  # a header is message data: anything odd counts as 0
            value = headers.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
                return value
            return 0

        return cls(number(HEADER_SLOT) or None, number(HEADER_DEFERRALS), number(HEADER_FAILURES))


class ThrottledTask(Task):  # type: ignore[misc]  # Celery ships no type information
    """A Celery task whose starts are admitted by a shared :class:`~taskthrottle.Throttle`.

    Set ``throttle`` with the task options: a :class:`Throttle` (shared by every task that
    names it) or a limit such as ``"5/s"`` or ``5`` (a throttle of its own, named after the task).
    ``None`` leaves the task unthrottled, so an app may use this class as its ``task_cls``.
    """

    throttle: ClassVar[Throttle | str | float | None] = None
    #: Tokens one run takes from the throttle.
    throttle_cost: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name") or cls.__qualname__
        owner = f"task {name!r}"
        value = cls.__dict__.get("throttle")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            cls.throttle = Throttle(name, Rate.parse(value, owner=owner))
        elif value is not None and not isinstance(value, Throttle):
            raise ConfigurationError(
                f"{owner}: throttle must be a Throttle or a limit string such as '10/s', "
                f"not {value!r}", value=value, owner=owner,
            )
        throttle = cls.throttle
        cost = cls.throttle_cost
        if isinstance(throttle, Throttle) and (
            isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= throttle.burst
        ):
            raise ConfigurationError(
                f"{owner}: throttle_cost {cost!r} must be an integer from 1 to the burst of "
                f"{throttle!r}", value=cost, owner=owner,
            )

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        throttle = self.throttle
        if not isinstance(throttle, Throttle):
            return
        if self.request.is_eager:
            self._admit_eagerly(throttle)
            return
        carried = _Carried.from_request(self.request)
        try:
            settings = config.load(self.app)
        except ConfigurationError as exc:
            # A worker with bad settings must not drop work: hand it back to the fleet.
            countdown = _MISCONFIGURED_DELAY * random.uniform(0.5, 1.0)
            logger.error("%s[%s] not admitted: %s; deferred %.0f s", self.name, task_id, exc,
                         countdown)
            self._defer(throttle, carried.slot, carried.failures, carried, countdown,
                        wait=None, reason="misconfigured")
        # A stall between the decision and the start (a frozen or starved process) would make
        # this start later than the start gate recorded, bunched with the starts after it.
        # Measured on this process's monotonic clock, such a start is claimed again. The round
        # trip is the store's distance, not a stall, unless it takes longer than any network.
        tolerance = min(max(throttle.rate.interval_us / 2_000_000, 0.005), 0.05)
        reservation = carried.slot
        for _ in range(_MAX_RECLAIMS):
            asked = time.monotonic()
            decision = self._decide(throttle, reservation, carried, settings)
            answered = time.monotonic()
            if not decision.granted:
                break
            if decision.wait > 0:
                time.sleep(decision.wait)
            stalled = (time.monotonic() - answered - decision.wait
                       + max(0.0, answered - asked - _ROUND_TRIP_ALLOWANCE))
            if stalled <= tolerance:
                task_admitted.send(sender=self, task_id=task_id, throttle=throttle.name,
                                   deferrals=carried.deferrals, waited=decision.wait)
                return
            logger.info("%s[%s] stalled %.3f s after its admission: claiming again",
                        self.name, task_id, stalled)
            reservation = decision.slot
        else:  # stalled again and again: let another process have it
            self._defer(throttle, None, 0, carried, 0.001, wait=None, reason="stalled")

        if decision.outcome is Outcome.DENIED:
            # Beyond max_delay: hop without reserving; jitter so a crowd does not return at once.
            countdown = settings.max_delay * random.uniform(0.9, 1.0)
            reason = "horizon"
        else:
            countdown = max(decision.wait, 0.001)
            reason = ("reserved" if reservation is None
                      else "early" if decision.slot == reservation  # skewed clocks
                      else "gated")  # arrived too late to start without holding others back
        self._defer(throttle, decision.slot, 0, carried, min(countdown, settings.max_delay),
                    wait=decision.wait, reason=reason)

    def _decide(self, throttle: Throttle, reservation: int | None, carried: _Carried,
                settings: config.Settings) -> Decision:
        """One decision; when Redis fails, the task is deferred with backoff instead."""
        try:
            return throttle.acquire(
                self.throttle_cost, redis=config.client(self.app), prefix=settings.prefix,
                reserve=True, reservation=reservation, max_delay=settings.max_delay,
                max_inline_wait=self._max_inline_wait(settings),
            )
        except BackendError as exc:
            # Never run unthrottled, never fail: come back later, keeping any reservation.
            delay = min(settings.backoff_max, settings.backoff * 2 ** min(carried.failures, 30))
            countdown = delay * random.uniform(0.5, 1.0)
            transient = isinstance(exc.__cause__,
                                   (redis.ConnectionError, redis.TimeoutError, OSError))
            logger.log(logging.WARNING if transient else logging.ERROR,
                       "%s[%s] throttle %r unavailable (%s); deferred %.2f s",
                       self.name, self.request.id, throttle.name, exc, countdown)
            self._defer(throttle, reservation, carried.failures + 1, carried, countdown,
                        wait=None, reason="backend")

    def _max_inline_wait(self, settings: config.Settings) -> float:
        """``taskthrottle_max_inline_wait``, kept to a tenth of any time limit of the task (the
        sleep counts against it)."""
        request = self.request
        limits = [limit for limit in (*(request.timelimit or ()), self.soft_time_limit,
                                      self.time_limit) if limit]
        return min([settings.max_inline_wait, *(float(limit) / 10 for limit in limits)])

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's ``retry``; a reservation of an earlier delivery does not travel with it."""
        headers = self.request.headers
        if headers and HEADER_SLOT in headers:
            self.request.headers = {k: v for k, v in headers.items()
                                    if k not in (HEADER_SLOT, HEADER_FAILURES)}
        return super().retry(*args, **kwargs)

    def _defer(self, throttle: Throttle, slot: int | None, failures: int, carried: _Carried,
               countdown: float, *, wait: float | None, reason: str) -> NoReturn:
        """Re-publish this very task ``countdown`` seconds from now, then end this delivery."""
        request = self.request
        deferrals = carried.deferrals + 1
        headers = {k: v for k, v in (request.headers or {}).items() if k not in _OUR_HEADERS}
        headers[HEADER_DEFERRALS] = deferrals
        if slot:
            headers[HEADER_SLOT] = slot
        if failures:
            headers[HEADER_FAILURES] = failures
        # signature_from_request keeps id, args, kwargs, routing, priority, expiry, time
        # limits, links, chain, chord and group; ``retries`` is passed through unchanged.
        self.signature_from_request(request, countdown=countdown, headers=headers).apply_async()
        logger.info("%s[%s] throttled by %r (%s): deferred %.3f s (deferral %d)",
                    self.name, request.id, throttle.name, reason, countdown, deferrals)
        task_throttled.send(sender=self, task_id=request.id, throttle=throttle.name,
                            reason=reason, countdown=countdown, wait=wait, slot=slot,
                            deferrals=deferrals)
        raise Ignore()

    def _admit_eagerly(self, throttle: Throttle) -> None:
        """Eager runs (``apply()``, ``task_always_eager``) wait in place for their token.

        There is no broker to defer to, so the caller blocks (:meth:`Throttle.wait`) until the
        shared throttle admits it; a Redis error propagates as ``BackendError``.
        """
        settings = config.load(self.app)
        throttle.wait(self.throttle_cost, redis=config.client(self.app), prefix=settings.prefix,
                      max_delay=settings.max_delay, max_inline_wait=settings.max_inline_wait)
