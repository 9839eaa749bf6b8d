"""``ThrottledTask``: how Celery is adapted to the admission contract in ``throttle.py``.

``before_start`` asks the task's throttles, one decision each; if one refuses, what the others
granted is given back and the task is re-published with a countdown (same id, arguments, links,
chain, chord, headers; ``retries`` untouched), holding the reservation of the latest one, and the
current delivery ends with ``Ignore``. A body that raises :class:`RateLimited` pauses its
throttles and is deferred the same way. Nothing else happens here.
"""

from __future__ import annotations

import inspect
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import redis
from celery import Task
from celery.exceptions import Ignore

from . import config, leases
from .exceptions import BackendError, ConfigurationError, RateLimited
from .rate import Rate
from .signals import task_admitted, task_throttled, task_unthrottled, unthrottled
from .throttle import Decision, Outcome, Throttle, encode_key

logger = logging.getLogger("taskthrottle")

#: Message headers taskthrottle adds to a deferred task (plain integers, any serializer).
HEADER_SLOT = "taskthrottle_slot"
HEADER_DEFERRALS = "taskthrottle_deferrals"
HEADER_FAILURES = "taskthrottle_failures"
#: Which of the task's throttles the slot is held on (its index; absent: the first).
HEADER_HELD = "taskthrottle_held"
#: The reservation's ticket (it names the reservation's exact-window entries).
HEADER_TICKET = "taskthrottle_ticket"
_OUR_HEADERS = (HEADER_SLOT, HEADER_DEFERRALS, HEADER_FAILURES, HEADER_HELD, HEADER_TICKET)

#: Countdown (before jitter) of a task that a worker with invalid settings hands back.
_MISCONFIGURED_DELAY = 60.0
#: How long a deferral's hand-off record lives: the worker's main process reads it when the
#: pool process that deferred the task dies (within seconds).
HANDOFF_TTL_MS = 30_000
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
    held: int = 0
    ticket: int = 0

    @property
    def reservation(self) -> Decision | None:
        """The reservation carried, as the decision that made it."""
        if not self.slot:
            return None
        return Decision(Outcome.RESERVED, 0.0, self.slot, 0, self.ticket)

    @classmethod
    def from_request(cls, request: Any) -> _Carried:
        headers = request.headers or {}

        def number(name: str) -> int:  # a header is message data: anything odd counts as 0
            value = headers.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
                return value
            return 0

        return cls(number(HEADER_SLOT) or None, number(HEADER_DEFERRALS),
                   number(HEADER_FAILURES), number(HEADER_HELD), number(HEADER_TICKET))


ThrottleSpec = Throttle | str | float | Sequence[Throttle] | None


@dataclass(frozen=True, slots=True)
class _Ask:
    """One throttle of this delivery and the bucket (key) its arguments choose."""

    throttle: Throttle
    key: str | None


class ThrottledTask(Task):  # type: ignore[misc]  # Celery ships no type information
    """A Celery task whose starts are admitted by shared :class:`~taskthrottle.Throttle` s.

    Set ``throttle`` with the task options: a :class:`Throttle` (shared by every task that
    names it), a list of them (all must admit the task), or a limit such as ``"5/s"`` or ``5``
    (a throttle of its own, named after the task). ``None`` leaves the task to the app's
    ``taskthrottle_throttles`` setting (by task name or glob), else unthrottled, so an app may
    use this class as its ``task_cls``.
    """

    throttle: ClassVar[ThrottleSpec] = None
    #: Tokens one run takes from each throttle: a number, or a callable given the task's
    #: arguments (e.g. ``lambda items: len(items)`` for a batch call).
    throttle_cost: ClassVar[int | Callable[..., int]] = 1
    #: The worker's request class: it gives back the slots of a task whose pool process died
    #: under it (see :mod:`taskthrottle.request`); a custom one should subclass it.
    Request = "taskthrottle.request:ThrottledRequest"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name") or cls.__qualname__
        owner = f"task {name!r}"
        value = cls.__dict__.get("throttle")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            cls.throttle = Throttle(name, Rate.parse(value, owner=owner))
        elif isinstance(value, (list, tuple)) and value and all(
                isinstance(item, Throttle) for item in value):
            if len({t.name for t in value}) != len(value):
                raise ConfigurationError(f"{owner}: the same throttle is listed twice",
                                         value=value, owner=owner)
            cls.throttle = tuple(value)
        elif value is not None and not isinstance(value, Throttle):
            raise ConfigurationError(
                f"{owner}: throttle must be a Throttle, a list of Throttles or a limit string "
                f"such as '10/s', not {value!r}", value=value, owner=owner,
            )
        cost = cls.throttle_cost
        if callable(cost):
            return
        for throttle in _as_tuple(cls.throttle):
            if isinstance(cost, bool) or not isinstance(cost, int) \
                    or not 1 <= cost <= throttle.capacity:
                raise ConfigurationError(
                    f"{owner}: throttle_cost {cost!r} must be an integer from 1 to "
                    f"{throttle.capacity}, what {throttle!r} can ever grant", value=cost,
                    owner=owner,
                )

    def throttles(self, settings: config.Settings | None = None) -> tuple[Throttle, ...]:
        """This task's throttles: its own, else those the settings give its name."""
        own = _as_tuple(self.throttle)
        if own or settings is None:
            return own
        return settings.throttles_for(self.name)

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        if not _as_tuple(self.throttle) and not self.app.conf.get("taskthrottle_throttles"):
            return  # unthrottled: no settings to read, nothing to ask
        carried = _Carried.from_request(self.request)
        try:
            settings = config.load(self.app)
        except ConfigurationError as exc:
            if self.request.is_eager:
                raise
            # A worker with bad settings must not drop work: hand it back to the fleet.
            countdown = _MISCONFIGURED_DELAY * random.uniform(0.5, 1.0)
            logger.error("%s[%s] not admitted: %s; deferred %.0f s", self.name, task_id, exc,
                         countdown)
            self._defer(None, carried, countdown, wait=None, reason="misconfigured")
        throttles = self.throttles(settings)
        if not throttles:
            return
        # Wrong arguments for the key or cost can never be admitted: that fails the task, clearly.
        cost = self._cost(throttles, args, kwargs or {})
        asks = self._asks(throttles, args, kwargs)
        if self.request.is_eager:
            self._admit_eagerly(asks, cost, settings)
            return
        self._admit(asks, cost, carried, settings, self._max_inline_wait(settings))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or getattr(request, "taskthrottle_body", False):
            # A plain function call (also one the running task makes of itself): Celery's own
            # __call__, with a request of its own; the running task keeps its slots.
            return super().__call__(*args, **kwargs)
        request.taskthrottle_body = True
        try:
            return self.run(*args, **kwargs)
        except RateLimited as exc:
            if self.request.is_eager:  # no broker to defer to: pause for the others, re-raise
                settings = config.load(self.app)
                self._pause_for(exc, self._asks(self.throttles(settings), args, kwargs),
                                settings)
                raise
            self._pushed_back(exc, args, kwargs)
        finally:
            # The body ended: its concurrency slots are free now, before Celery stores the
            # result (a caller woken by the result sees them free); task_postrun, which comes
            # after the result, releases whatever this did not.
            request.taskthrottle_body = False
            if request.id:
                leases.release(request.id)

    def _admit(self, asks: list[_Ask], cost: int, carried: _Carried,
               settings: config.Settings, inline: float) -> None:
        """Return once every throttle admits this start; otherwise defer (raise ``Ignore``).

        Each throttle is asked for a start no earlier than those already granted; a start a
        throttle granted is measured on this process's monotonic clock, and one that would come
        later than that throttle recorded (a throttle asked after it wanted a later start, or
        the process stalled) is claimed again, so no throttle sees a start later than it
        allowed. The round trip is the store's distance, not a stall,
        unless it takes longer than any network.
        """
        tolerance = min(max(min((a.throttle.interval_us for a in asks if a.throttle.limits),
                                default=100_000) / 2_000_000, 0.005), 0.05)
        reservations: dict[int, Decision] = {}
        if carried.reservation is not None:
            reservations[carried.held] = carried.reservation
        grants: dict[int, tuple[Decision, float]] = {}
        lease = self.request.id
        round_trip = 0.0
        # The throttle that refused this task last is asked first: once one refuses, the
        # others are only asked what they would say (a peek takes nothing), so nothing needs
        # giving back but what was granted before the refusal.
        hint = _last_refuser.get(self.name)
        order = sorted(range(len(asks)), key=lambda i: asks[i].throttle.name != hint)
        if carried.reservation is not None and carried.held < len(asks):
            # The slot held is claimed first; the others are asked when that start is near
            # (asking a bucket for a start far ahead would leave its slots before it unused).
            order = [carried.held] + [i for i in order if i != carried.held]
        for _ in range(_MAX_RECLAIMS):
            refused: dict[int, Decision] = {}
            peeks: dict[int, Decision] = {}
            for i in order:
                if i in grants:
                    continue
                # no earlier than the throttles already granted start (Redis clock), asked
                # once that start is a round trip away
                if grants and i not in reservations:
                    ahead = max(start for _, start in grants.values()) - time.monotonic()
                    if ahead > round_trip:
                        time.sleep(ahead - round_trip)
                not_before = max((d.slot or 0 for d, _ in grants.values()), default=0)
                asked = time.monotonic()
                decision = self._decide(asks, i, cost, reservations.get(i), carried, settings,
                                        inline, lease, grants, peek=bool(refused),
                                        not_before=not_before)
                answered = time.monotonic()
                round_trip = max(round_trip, min(answered - asked, _ROUND_TRIP_ALLOWANCE))
                if decision.granted:
                    late = max(0.0, answered - asked - _ROUND_TRIP_ALLOWANCE)
                    grants[i] = (decision, answered + decision.wait - late)
                    reservations.pop(i, None)
                elif refused:
                    peeks[i] = decision
                else:
                    refused[i] = decision
            if refused:
                first = next(iter(refused))
                _last_refuser[self.name] = asks[first].throttle.name
                if peeks:
                    self._reserve_latest(asks, cost, refused, peeks, grants, carried, settings,
                                         inline, lease)
                self._refuse(asks, cost, grants, refused, reservations, carried, settings,
                             inline)
            latest = max(start for _, start in grants.values())
            early = [i for i, (_, start) in grants.items() if start < latest - tolerance]
            if early:  # a throttle granted later than one asked before it: move those along
                for i in early:
                    reservations[i] = grants.pop(i)[0]  # claimed again, not before the latest
                continue
            # A pause (a 429 elsewhere) that lands while this task sleeps toward its start
            # stops it: checked one round trip before the start, so the check does not
            # delay it (a hung check does, and then counts as a stall).
            paused: dict[int, float] = {}
            if latest - time.monotonic() > round_trip:
                time.sleep(latest - time.monotonic() - round_trip)
                paused = {i: 0.0 for i, (decision, _) in grants.items()
                          if self._paused_after(asks[i], decision, settings)}
            time.sleep(max(0.0, latest - time.monotonic()))
            now = time.monotonic()
            stalled = {i: now - start for i, (_, start) in grants.items()
                       if now - start > tolerance}
            stalled.update(paused)
            if not stalled:
                self._admitted(asks, grants, carried, settings)
                return
            logger.info("%s[%s] stalled %.3f s after its admission (or paused meanwhile): "
                        "claiming again", self.name, self.request.id, max(stalled.values()))
            for i in stalled:
                reservations[i] = grants.pop(i)[0]
        # Stalled again and again: let another process have it.
        for i, (decision, _) in grants.items():
            self._give_back(asks[i], decision, cost)
        self._defer(asks[0].throttle, carried, 0.001, wait=None, reason="stalled", failures=0)

    def _paused_after(self, ask: _Ask, decision: Decision, settings: config.Settings) -> bool:
        try:
            until = ask.throttle.paused_until(key=ask.key, redis=config.client(self.app),
                                              prefix=settings.prefix)
        except BackendError:
            return False  # the decision stands; the next one will meet the outage
        return decision.slot is not None and until > decision.slot

    def _reserve_latest(self, asks: list[_Ask], cost: int, refused: dict[int, Decision],
                        peeks: dict[int, Decision], grants: dict[int, tuple[Decision, float]],
                        carried: _Carried, settings: config.Settings, inline: float,
                        lease: str) -> None:
        """A throttle peeked after the refusal would make the task wait longer: reserve there
        (the refuser's shorter reservation is then given back by :meth:`_refuse`)."""
        def eta(decision: Decision) -> float:  # when the task would come back
            if decision.outcome is Outcome.BUSY:
                return min(max(decision.wait, 0.01), settings.busy_delay)
            return min(decision.wait, settings.max_delay)

        ((_, refusal),) = refused.items()
        j = max(peeks, key=lambda i: eta(peeks[i]))
        if eta(peeks[j]) <= eta(refusal) + 0.001:
            return
        if peeks[j].outcome is not Outcome.DENIED or peeks[j].wait > settings.max_delay:
            refused[j] = peeks[j]  # busy, or beyond the horizon: nothing to reserve
            return
        decision = self._decide(asks, j, cost, None, carried, settings, inline, lease, grants)
        if decision.granted:  # it freed up meanwhile: given back with the other grants
            grants[j] = (decision, time.monotonic())
        else:
            refused[j] = decision

    def _admitted(self, asks: list[_Ask], grants: dict[int, tuple[Decision, float]],
                  carried: _Carried, settings: config.Settings) -> None:
        client = config.client(self.app)
        leases.hold(self.request.id, [
            leases.Held(asks[i].throttle, asks[i].key, decision.lease, client, settings.prefix)
            for i, (decision, _) in grants.items() if decision.lease
        ])
        waited = max(decision.wait for decision, _ in grants.values())
        for ask in asks:
            task_admitted.send(sender=self, task_id=self.request.id, throttle=ask.throttle.name,
                               deferrals=carried.deferrals, waited=waited)

    def _refuse(self, asks: list[_Ask], cost: int, grants: dict[int, tuple[Decision, float]],
                refused: dict[int, Decision], reservations: dict[int, Decision],
                carried: _Carried, settings: config.Settings, inline: float) -> NoReturn:
        """Some throttle refused: give back what the others granted and defer the task to the
        latest wait, keeping the reservation that wait belongs to.

        A reserved task is sent back a little early (half the inline wait, at most 0.1 s): a
        delivery is never early by the broker's clock, often late by a few milliseconds, and
        a late claim may have to be bumped; an early one sleeps out the rest and starts on
        its slot."""
        lead = min(inline / 2, 0.1)
        def countdown(decision: Decision) -> float:
            if decision.outcome is Outcome.DENIED:  # beyond max_delay: hop without reserving
                return settings.max_delay * random.uniform(0.9, 1.0)
            if decision.outcome is Outcome.BUSY:  # jitter, so a crowd does not return at once
                return min(max(decision.wait, 0.01), settings.busy_delay) \
                    * random.uniform(0.5, 1.5)
            return max(decision.wait - lead, 0.001)

        waits = {i: countdown(decision) for i, decision in refused.items()}
        latest = max(waits, key=lambda i: waits[i])
        for i, (decision, _) in grants.items():
            self._give_back(asks[i], decision, cost)
        for i, decision in refused.items():
            if i != latest and decision.outcome is Outcome.RESERVED:
                self._give_back(asks[i], decision, cost)
        decision = refused[latest]
        held = reservations.get(latest)
        claimed = held.slot if held is not None else None
        if decision.outcome is Outcome.DENIED:
            reason = "horizon"
        elif decision.outcome is Outcome.BUSY:
            reason = "busy"
        elif decision.paused_until and decision.slot and decision.slot <= decision.paused_until \
                + asks[latest].throttle.interval_us * 2 * len(asks):
            reason = "paused"
        else:
            reason = ("reserved" if claimed is None
                      else "early" if decision.slot == claimed  # skewed clocks
                      else "gated")  # arrived too late to start without holding others back
        self._defer(asks[latest].throttle, carried, min(waits[latest], settings.max_delay),
                    wait=decision.wait, reason=reason, slot=decision.slot, held=latest,
                    ticket=decision.ticket)

    def _decide(self, asks: list[_Ask], i: int, cost: int, reservation: Decision | None,
                carried: _Carried, settings: config.Settings, inline: float, lease: str,
                grants: dict[int, tuple[Decision, float]], *, peek: bool = False,
                not_before: int = 0) -> Decision:
        """One decision (or a peek); when Redis fails, the failure policy applies."""
        ask = asks[i]
        try:
            return ask.throttle.acquire(
                cost, key=ask.key, redis=config.client(self.app), prefix=settings.prefix,
                reserve=True, reservation=None if peek else reservation,
                max_delay=settings.max_delay, max_inline_wait=inline, lease=lease, peek=peek,
                not_before=not_before,
            )
        except ConfigurationError as exc:
            # An operator's override that can never grant this cost: hand the task back (and
            # say so loudly) rather than fail it; removing the override lets it run.
            countdown = _MISCONFIGURED_DELAY * random.uniform(0.5, 1.0)
            logger.error("%s[%s] not admitted: %s; deferred %.0f s", self.name, self.request.id,
                         exc, countdown)
            for j, (granted, _) in grants.items():
                self._give_back(asks[j], granted, cost, quiet=True)
            self._defer(ask.throttle, carried, countdown, wait=None, reason="misconfigured")
        except BackendError as exc:
            policy = ask.throttle.on_error or settings.on_backend_error
            if policy == "allow":  # the operator chose availability over the limit
                logger.warning("%s[%s] throttle %r unavailable (%s): running unthrottled",
                               self.name, self.request.id, ask.throttle.name, exc)
                unthrottled[ask.throttle.name] += 1
                task_unthrottled.send(sender=self, task_id=self.request.id,
                                      throttle=ask.throttle.name, error=exc)
                return Decision(Outcome.GRANTED, 0.0, None, 0)
            for j, (granted, _) in grants.items():
                self._give_back(asks[j], granted, cost, quiet=True)
            if policy == "raise":
                logger.error("%s[%s] throttle %r unavailable (%s): failing the task",
                             self.name, self.request.id, ask.throttle.name, exc)
                raise
            # Never run unthrottled, never fail: come back later, keeping any reservation.
            delay = min(settings.backoff_max, settings.backoff * 2 ** min(carried.failures, 30))
            countdown = delay * random.uniform(0.5, 1.0)
            transient = isinstance(exc.__cause__,
                                   (redis.ConnectionError, redis.TimeoutError, OSError))
            logger.log(logging.WARNING if transient else logging.ERROR,
                       "%s[%s] throttle %r unavailable (%s); deferred %.2f s",
                       self.name, self.request.id, ask.throttle.name, exc, countdown)
            self._defer(ask.throttle, carried, countdown, wait=None, reason="backend",
                        slot=carried.slot, failures=carried.failures + 1, held=carried.held,
                        ticket=carried.ticket)

    def _give_back(self, ask: _Ask, decision: Decision, cost: int, *, quiet: bool = False) -> None:
        try:
            ask.throttle.give_back(decision, cost, key=ask.key, redis=config.client(self.app),
                                   prefix=config.load(self.app).prefix)
        except BackendError as exc:  # what is not given back lapses: safe, just slower
            if not quiet:
                logger.warning("%s[%s] could not give back a slot of %r: %s", self.name,
                               self.request.id, ask.throttle.name, exc)

    def _pushed_back(self, exc: RateLimited, args: Any, kwargs: Any) -> NoReturn:
        """The vendor said stop: pause the throttles for everyone, then defer this task past
        the pause (it reserves the first slot after it, like any task arriving meanwhile)."""
        settings = config.load(self.app)
        throttles = self.throttles(settings)
        asks = self._asks(throttles, args, kwargs)
        paused = self._pause_for(exc, asks, settings)
        leases.release(self.request.id)
        carried = _Carried.from_request(self.request)
        carried = _Carried(None, carried.deferrals, 0)
        if not paused:  # nothing to pause: wait out what the vendor asked, in hops
            self._defer(None, carried, min(max(exc.retry_after, 0.001), settings.max_delay),
                        wait=exc.retry_after, reason="paused")
        self._admit(asks, self._cost(throttles, args, kwargs or {}), carried, settings, 0.0)
        # Admitted at once (a pause of 0 s): give it all back and come again right away.
        leases.release(self.request.id)
        self._defer(asks[0].throttle, carried, 0.001, wait=0.0, reason="paused")

    def _asks(self, throttles: tuple[Throttle, ...], args: Any, kwargs: Any) -> list[_Ask]:
        """Each throttle with the bucket these arguments choose. Key templates see every
        argument by its name (``"{tenant}"`` fits ``f(1, "acme")`` and ``f(1, tenant="acme")``)."""
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        named = None
        if any(isinstance(t.key, str) for t in throttles):
            try:
                bound = inspect.signature(self.run).bind_partial(*args, **kwargs).arguments
                named = {**kwargs, **{k: v for k, v in bound.items() if k not in kwargs}}
            except (TypeError, ValueError):  # arguments the body does not take: names as given
                named = kwargs
        return [_Ask(t, t.key_for(args, kwargs, named=named)) for t in throttles]

    def _pause_for(self, exc: RateLimited, asks: list[_Ask],
                   settings: config.Settings) -> list[_Ask]:
        """Pause the throttles a ``RateLimited`` names (default: all the task's)."""
        paused = [a for a in asks if exc.throttle in (None, a.throttle.name)]
        if exc.throttle is not None and not paused:
            logger.warning("%s[%s] RateLimited(throttle=%r) names none of the task's throttles "
                           "(%s): pausing them all", self.name, self.request.id, exc.throttle,
                           ", ".join(repr(a.throttle.name) for a in asks))
            paused = asks
        for ask in paused:
            try:
                ask.throttle.pause(exc.retry_after, key=ask.key, redis=config.client(self.app),
                                   prefix=settings.prefix)
            except (BackendError, ConfigurationError) as error:
                logger.warning("%s[%s] could not pause %r: %s", self.name, self.request.id,
                               ask.throttle.name, error)
        logger.warning("%s[%s] rate limited upstream: %s %.3g s%s", self.name,
                       self.request.id, "paused " + ", ".join(repr(a.throttle.name)
                                                            for a in paused)
                       if paused else "nothing to pause; deferred", exc.retry_after,
                       f" ({exc.note})" if exc.note else "")
        return paused

    def _cost(self, throttles: tuple[Throttle, ...], args: Any, kwargs: Any) -> int:
        cost = type(self).throttle_cost  # from the class: a function, not a bound method
        if callable(cost):
            cost = cost(*(args or ()), **kwargs)
        for throttle in throttles:
            if isinstance(cost, bool) or not isinstance(cost, int) \
                    or not 1 <= cost <= throttle.capacity:
                raise ConfigurationError(
                    f"task {self.name!r}: cost {cost!r} must be an integer from 1 to "
                    f"{throttle.capacity}, what {throttle!r} can ever grant", value=cost,
                    owner=f"task {self.name!r}")
        return cost

    def _max_inline_wait(self, settings: config.Settings) -> float:
        """``taskthrottle_max_inline_wait``, kept to a tenth of any time limit of the task (the
        sleep counts against it)."""
        request = self.request
        limits = [limit for limit in (*(request.timelimit or ()), self.soft_time_limit,
                                      self.time_limit) if limit]
        return min([settings.max_inline_wait, *(float(limit) / 10 for limit in limits)])

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's ``retry``; a reservation of an earlier delivery does not travel with it,
        and this run's concurrency slots go back before the retry is sent (the retry, which
        has the same id, is admitted afresh; it must not find them still held by this run)."""
        if self.request.id and not self.request.called_directly:
            leases.release(self.request.id)
        headers = self.request.headers
        if headers and HEADER_SLOT in headers:
            self.request.headers = {k: v for k, v in headers.items() if k not in (
                HEADER_SLOT, HEADER_FAILURES, HEADER_HELD, HEADER_TICKET)}
        return super().retry(*args, **kwargs)

    def _defer(self, throttle: Throttle | None, carried: _Carried, countdown: float, *,
               wait: float | None, reason: str, slot: int | None = None,
               failures: int | None = None, held: int = 0, ticket: int = 0) -> NoReturn:
        """Re-publish this very task ``countdown`` seconds from now, then end this delivery."""
        request = self.request
        deferrals = carried.deferrals + 1
        failures = carried.failures if failures is None else failures
        if reason == "misconfigured":
            slot, held, ticket = carried.slot, carried.held, carried.ticket
        headers = {k: v for k, v in (request.headers or {}).items() if k not in _OUR_HEADERS}
        headers[HEADER_DEFERRALS] = deferrals
        if slot:
            headers[HEADER_SLOT] = slot
            if held:
                headers[HEADER_HELD] = held
            if ticket:
                headers[HEADER_TICKET] = ticket
        if failures:
            headers[HEADER_FAILURES] = failures
        # signature_from_request keeps id, args, kwargs, routing, priority, expiry, time
        # limits, links, chain, chord and group; ``retries`` is passed through unchanged.
        self.signature_from_request(request, countdown=countdown, headers=headers).apply_async()
        if reason not in ("backend", "misconfigured"):  # the store answers: say it is handed off
            _record_handoff(self.app, request.id, deferrals)
        name = throttle.name if throttle is not None else None
        logger.info("%s[%s] %s (%s): deferred %.3f s (deferral %d)", self.name, request.id,
                    f"throttled by {name!r}" if name else "not admitted", reason, countdown,
                    deferrals)
        task_throttled.send(sender=self, task_id=request.id, throttle=name,
                            reason=reason, countdown=countdown, wait=wait, slot=slot,
                            deferrals=deferrals)
        raise Ignore()

    def _admit_eagerly(self, asks: list[_Ask], cost: int, settings: config.Settings) -> None:
        """Eager runs (``apply()``, ``task_always_eager``) wait in place for their tokens.

        There is no broker to defer to, so the caller blocks (:meth:`Throttle.wait`) until each
        shared throttle admits it; a Redis error propagates as ``BackendError``.
        """
        try:
            for ask in asks:
                try:
                    ask.throttle.wait(cost, key=ask.key, redis=config.client(self.app),
                                      prefix=settings.prefix, max_delay=settings.max_delay,
                                      max_inline_wait=settings.max_inline_wait,
                                      lease=self.request.id)
                    if ask.throttle.concurrency is not None:  # held until the body ends
                        leases.hold(self.request.id, [leases.Held(
                            ask.throttle, ask.key, self.request.id, config.client(self.app),
                            settings.prefix)])
                except BackendError as exc:
                    if (ask.throttle.on_error or settings.on_backend_error) != "allow":
                        raise  # "defer" has no broker to defer to here
                    unthrottled[ask.throttle.name] += 1
                    task_unthrottled.send(sender=self, task_id=self.request.id,
                                          throttle=ask.throttle.name, error=exc)
        except BaseException:  # a later throttle failed: the slots taken so far go back
            leases.release(self.request.id)
            raise


def handoff_key(prefix: str, task_id: str) -> str:
    """Where a deferral records that the task lives on in a newer message (its own hash tag:
    hand-offs spread over a cluster)."""
    return f"{prefix}{{task{encode_key(task_id)}}}:handoff"


def _record_handoff(app: Any, task_id: str, deferrals: int) -> None:
    """The copy of ``task_id`` carrying ``deferrals`` is published. Should this process die
    before its delivery is acknowledged, the worker's main process reads this and ends the
    delivery as handed off, instead of requeueing it (a second run) or failing it (errbacks
    for a task that still runs). Best effort: without it, Celery's own rules apply."""
    try:
        settings = config.load(app)
        config.client(app).set(handoff_key(settings.prefix, task_id), deferrals,
                               px=HANDOFF_TTL_MS)
    except Exception as exc:  # never turns a deferral into a failure
        logger.debug("taskthrottle: hand-off of %s not recorded: %s", task_id, exc)


def handed_off(app: Any, request: Any) -> bool:
    """Whether the delivery ``request`` (a task context) published its deferred copy: the
    record names a copy with one deferral more than this delivery carries. (A later delivery
    of the task carries at least the copy's count, retries included, so it never matches.)"""
    try:
        settings = config.load(app)
        recorded = config.client(app).get(handoff_key(settings.prefix, request.id))
        return recorded is not None and \
            int(recorded) == _Carried.from_request(request).deferrals + 1
    except Exception as exc:  # unknown: Celery's own rules apply
        logger.warning("taskthrottle: could not tell whether %s was handed off: %s",
                       request.id, exc)
        return False


#: Per task name, the throttle that refused it last (asked first next time).
_last_refuser: dict[str, str] = {}


def _as_tuple(value: object) -> tuple[Throttle, ...]:
    if isinstance(value, Throttle):
        return (value,)
    if isinstance(value, tuple):
        return value
    return ()
