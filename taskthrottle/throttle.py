"""What a limit is: a named :class:`Throttle`, and the :class:`Decision` it hands out.

The admission contract, in full:

* One decision is one atomic Lua script (``lua/acquire.lua``) on Redis, timed by Redis ``TIME``.
* For a rate ``N/P`` with burst ``b``, the admissions that *start* in any window of length ``T``
  number at most ``b + N·T/P`` on the Redis clock, however many callers share the throttle.
* A caller that may wait can *reserve* the next free slot: it is told when, comes back then with
  the reservation and starts without taking a second token. Slots further away than ``max_delay``
  are not reserved (nothing is taken; the caller tries again later).
* Starts, not promises, are what is bounded: a claim that comes too late to start without holding
  back the starts after it is bumped to a fresh slot; one that comes early keeps its slot.
* A name is one bucket: a process refuses a second definition of a name with another limit.
* Redis errors surface as :class:`~taskthrottle.exceptions.BackendError`, wrapped here only.
"""

from __future__ import annotations

import enum
import re
import threading
import time
import weakref
from typing import Any, NamedTuple

import redis as _redis

from . import _scripts
from .exceptions import BackendError, ConfigurationError
from .rate import Rate

DEFAULT_PREFIX = "taskthrottle:"
_NAME = re.compile(r"^[^\s{}\x00-\x1f\x7f]{1,200}$")


class Outcome(enum.IntEnum):
    """What a decision said; the values are the script's return codes."""

    GRANTED = 1
    """The token is taken: start after ``wait`` seconds (0 unless a short wait was allowed)."""
    RESERVED = 2
    """A slot ``wait`` seconds ahead is held for the caller: come back then with ``slot``."""
    DENIED = 3
    """Nothing is held (a claimed slot is given up); try again after ``wait`` seconds."""


class Decision(NamedTuple):
    """The answer to one :meth:`Throttle.acquire`.

    Attributes:
        outcome: what the throttle decided.
        wait: seconds until the caller may start (granted) or should come back (otherwise).
        slot: microseconds on the Redis clock: the reservation held (RESERVED) or the start
            granted (GRANTED); ``None`` when DENIED. Use :attr:`reserved` to tell them apart.
        now: the Redis clock at the decision, in microseconds.
    """

    outcome: Outcome
    wait: float
    slot: int | None
    now: int

    @property
    def granted(self) -> bool:
        return self.outcome is Outcome.GRANTED

    @property
    def reserved(self) -> bool:
        return self.slot is not None and not self.granted


def validate_name(name: object) -> str:
    """Check a throttle name: 1–200 printable characters, no whitespace or braces."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"invalid throttle name {name!r}: use 1-200 printable characters without "
            "whitespace, '{' or '}'",
            value=name, owner="throttle name",
        )
    return name


class Throttle:
    """A named limit shared by every caller that uses the same name and Redis.

    Args:
        name: the bucket's name; every worker using this name shares one bucket.
        rate: a limit such as ``"10/s"``, ``"100/m"``, ``"5/30s"``, ``"1000/d"``, or ``"10"``
            (per second, as in Celery).
        burst: how many admissions may start back to back after an idle spell (default 1,
            like Celery's own bucket).
        redis: a client (or URL) to use when :meth:`acquire` is called without one.

    Raises:
        ConfigurationError: a bad name, rate or burst; the message names the throttle.
    """

    __slots__ = ("__weakref__", "_args", "_client", "_keys", "burst", "name", "rate")

    def __init__(
        self, name: str, rate: str | float | Rate, *, burst: int = 1,
        redis: _redis.Redis | str | None = None,
    ) -> None:
        self.name = validate_name(name)
        self.rate = Rate.parse(rate, owner=f"throttle {name!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigurationError(
                f"throttle {name!r}: invalid burst {burst!r}: expected an integer >= 1",
                value=burst, owner=f"throttle {name!r}",
            )
        if self.rate.interval_us * burst > _MAX_SPAN_US:
            raise ConfigurationError(
                f"throttle {name!r}: burst {burst} at {self.rate.text!r} would take more than "
                "8 years to refill", value=burst, owner=f"throttle {name!r}",
            )
        self.burst = burst
        _claim_name(self)
        self._client: Any = redis
        self._keys: dict[str, str] = {}
        self._args: dict[tuple[int, bool, float, float], tuple[bytes, ...]] = {}

    def __repr__(self) -> str:
        return f"Throttle({self.name!r}, {self.rate.text!r}, burst={self.burst})"

    def key(self, prefix: str = DEFAULT_PREFIX) -> str:
        """The Redis key of this throttle's state; the name is its hash tag (one cluster slot)."""
        key = self._keys.get(prefix)
        if key is None:
            key = self._keys[prefix] = f"{prefix}{{{self.name}}}"
        return key

    def acquire(
        self,
        cost: int = 1,
        *,
        redis: _redis.Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        reserve: bool = False,
        reservation: int | None = None,
        max_delay: float = 300.0,
        max_inline_wait: float = 0.0,
    ) -> Decision:
        """Ask for ``cost`` tokens now, in one round trip.

        Args:
            cost: tokens to take (1 to ``burst``).
            redis: the client to use; defaults to the one given to the constructor.
            prefix: the namespace of the throttle's key.
            reserve: when denied, hold the next free slot (if within ``max_delay``).
            reservation: the ``slot`` of an earlier RESERVED decision being claimed.
            max_delay: the furthest ahead, in seconds, a slot may be reserved.
            max_inline_wait: a start at most this many seconds ahead is GRANTED with that
                ``wait``; the caller is expected to sleep it out before starting.

        Raises:
            ConfigurationError: ``cost`` out of range, or no Redis client.
            BackendError: Redis failed or could not be reached.
        """
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= self.burst:
            raise ConfigurationError(
                f"throttle {self.name!r}: cost {cost!r} must be an integer from 1 to the "
                f"burst ({self.burst})", value=cost, owner=f"throttle {self.name!r}",
            )
        client = redis if redis is not None else self._default_client()
        args = self._args.get((cost, reserve, max_delay, max_inline_wait))
        if args is None:  # first call with these options: check them once, then encode them
            for label, seconds in (("max_delay", max_delay), ("max_inline_wait", max_inline_wait)):
                if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                        or not 0 <= seconds < 10**9:
                    raise ConfigurationError(
                        f"throttle {self.name!r}: {label} {seconds!r} must be a number of "
                        "seconds >= 0", value=seconds, owner=f"throttle {self.name!r}",
                    )
            args = self._args[(cost, reserve, max_delay, max_inline_wait)] = tuple(
                str(arg).encode() for arg in (
                    self.rate.interval_us, self.burst, cost, 0,
                    round(max_delay * 1_000_000) if reserve else -1,
                    round(max_inline_wait * 1_000_000),
                )
            )
        if reservation:
            args = (*args[:3], str(reservation).encode(), *args[4:])
        try:
            reply = _scripts.script(client, "acquire")(
                keys=(self.key(prefix),), args=args, client=client)
        except redis_errors as exc:
            raise BackendError(
                f"throttle {self.name!r}: decision failed: {exc}", throttle=self.name
            ) from exc
        code, wait, slot, now = reply.split()
        return Decision(_OUTCOMES[int(code)], int(wait) / 1_000_000, int(slot) or None, int(now))

    def wait(
        self,
        cost: int = 1,
        *,
        redis: _redis.Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_delay: float = 300.0,
        max_inline_wait: float = 0.25,
    ) -> float:
        """Block until ``cost`` tokens are granted, holding a reservation while asleep.

        Returns:
            the seconds waited, on the Redis clock.

        Raises:
            ConfigurationError, BackendError: as :meth:`acquire`.
        """
        slot: int | None = None
        first: int | None = None
        while True:
            decision = self.acquire(cost, redis=redis, prefix=prefix, reserve=True,
                                    reservation=slot, max_delay=max_delay,
                                    max_inline_wait=max_inline_wait)
            first = decision.now if first is None else first
            time.sleep(decision.wait)
            if decision.granted:
                return (decision.now - first) / 1_000_000 + decision.wait
            slot = decision.slot

    def _default_client(self) -> Any:
        if self._client is None:
            raise ConfigurationError(
                f"throttle {self.name!r}: no Redis client: pass redis= to acquire() or to "
                "Throttle()", owner=f"throttle {self.name!r}",
            )
        if isinstance(self._client, str):
            self._client = _redis.Redis.from_url(self._client)
        return self._client


#: What a call into redis-py may raise when the store or its URL is wrong; ValueError and
#: TypeError come from connection options checked only when a connection opens.
redis_errors = (_redis.RedisError, OSError, ValueError, TypeError)
#: The longest a bucket may take to refill (keeps every timestamp an exact Lua number).
_MAX_SPAN_US = 2**48
_names: weakref.WeakValueDictionary[str, Throttle] = weakref.WeakValueDictionary()
_names_lock = threading.Lock()


def _claim_name(throttle: Throttle) -> None:
    """One name, one limit: two different limits under one name would share a bucket and
    each be broken by the other, so the second definition in a process is refused."""
    with _names_lock:
        other = _names.get(throttle.name)
        if other is not None and (other.rate.interval_us, other.burst) != (
                throttle.rate.interval_us, throttle.burst):
            raise ConfigurationError(
                f"throttle {throttle.name!r} is already defined as {other!r}: one name is one "
                f"bucket, so it cannot also be {throttle.rate.text!r} burst {throttle.burst}; "
                "use another name", value=throttle.name, owner=f"throttle {throttle.name!r}",
            )
        if other is None:
            _names[throttle.name] = throttle
_OUTCOMES: dict[int, Outcome] = {outcome.value: outcome for outcome in Outcome}
