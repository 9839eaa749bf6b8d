"""What a limit is: a named :class:`Throttle`, and the :class:`Decision` it hands out.

The admission contract, in full:

* One decision is one atomic Lua script (``lua/acquire.lua``) on Redis, timed by Redis ``TIME``,
  across every limit of the throttle: all of them agree on one start time, or none is charged.
* A token bucket ``N/P`` with burst ``b`` lets at most ``b + N·T/P`` admissions *start* in any
  window of length ``T`` on the Redis clock; an exact window (``Limit(..., exact=True)``) lets at
  most ``N`` start in any window of length ``P``; a concurrency cap lets at most ``C`` hold a
  lease at once. However many callers share the throttle.
* A caller that may wait can *reserve* the next free slot: it is held on every limit, the caller
  is told when, comes back then with the reservation and starts without taking a second token.
  Slots further away than ``max_delay`` are not reserved (nothing is taken; try again later).
* Starts, not promises, are what is bounded: a claim that comes too late to start without holding
  back the starts after it is bumped to a fresh slot; one that comes early keeps its slot.
* A pause (the vendor said stop) is one more limit; an operator's override replaces the code's
  limits at the next decision of every worker.
* A name is one throttle: a process refuses a second definition of a name with other limits. A
  keyed throttle has one bucket per key; key text is hashed when it is not short and plain, so
  it can never leave the throttle's namespace or hash tag.
* Redis errors surface as :class:`~taskthrottle.exceptions.BackendError`, wrapped here only.
"""

from __future__ import annotations

import enum
import hashlib
import re
import string
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis as _redis

from . import _scripts
from .exceptions import BackendError, ConfigurationError
from .rate import Rate

DEFAULT_PREFIX = "taskthrottle:"
#: What a task may do when Redis fails during its decision (see ``Throttle(on_error=)``).
ON_ERROR = ("defer", "allow", "raise")
_NAME = re.compile(r"^[^\s{}\x00-\x1f\x7f]{1,200}$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")


class Outcome(enum.IntEnum):
    """What a decision said; the values are the script's return codes."""

    GRANTED = 1
    """Taken from every limit: start after ``wait`` seconds (0 unless a short wait was allowed)."""
    RESERVED = 2
    """A slot ``wait`` seconds ahead is held on every limit: come back then with ``slot``."""
    DENIED = 3
    """Nothing is held (a claimed slot is given up); try again after ``wait`` seconds."""
    BUSY = 4
    """The concurrency cap is full; nothing is taken. ``wait`` is when the oldest lease
    expires (an upper bound: leases usually end sooner)."""


class Decision(NamedTuple):
    """The answer to one :meth:`Throttle.acquire`.

    Attributes:
        outcome: what the throttle decided.
        wait: seconds until the caller may start (granted) or should come back (otherwise).
        slot: microseconds on the Redis clock: the reservation held (RESERVED, and a BUSY
            claim's kept slot) or the start granted (GRANTED); ``None`` when nothing is held.
        now: the Redis clock at the decision, in microseconds.
        ticket: opaque; lets :meth:`Throttle.give_back` undo this decision (0: nothing to undo).
        paused_until: microseconds on the Redis clock until which the bucket is paused (0: not).
        lease: the concurrency lease a grant holds (release it when the work ends).
    """

    outcome: Outcome
    wait: float
    slot: int | None
    now: int
    ticket: int = 0
    paused_until: int = 0
    lease: str | None = None

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


class Limit:
    """One limit of a throttle: a token bucket (the default) or an exact sliding window.

    Args:
        rate: ``"10/s"``, ``"100/m"``, ``"5/30s"``, ``"1000/d"``, or a number (per second).
        burst: a token bucket's capacity: how many may start back to back after an idle
            spell (default 1, like Celery's own bucket).
        exact: an exact sliding window instead: never more than ``N`` starts in any window of
            length ``P`` (the window is kept ``min(P/20, 50 ms)`` longer, for the moment between
            a decision and the body's start). Kept as one sorted-set entry per admission for
            one period, so use it for quotas (``"10000/d"``) and windows where the bucket's
            ``burst + N`` would be too many.

    A limit can also be written as text: ``"10/s"``, ``"10/s,burst=5"``, ``"20/10s,exact"``.
    """

    __slots__ = ("burst", "exact", "rate")

    def __init__(self, rate: str | float | Rate, *, burst: int = 1, exact: bool = False,
                 owner: str = "limit") -> None:
        self.rate = Rate.parse(rate, owner=owner)
        self.exact = bool(exact)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigurationError(
                f"{owner}: invalid burst {burst!r}: expected an integer >= 1",
                value=burst, owner=owner,
            )
        if self.exact:
            if burst != 1:
                raise ConfigurationError(
                    f"{owner}: an exact window {self.rate.text!r} has no burst (it allows "
                    f"{self.rate.count:g} in any {self.rate.period:g} s)", value=burst,
                    owner=owner)
            if self.rate.count != int(self.rate.count) or self.rate.count > 1_000_000:
                raise ConfigurationError(
                    f"{owner}: an exact window needs a whole count up to 1,000,000, not "
                    f"{self.rate.text!r}", value=rate, owner=owner)
        elif self.rate.interval_us * burst > _MAX_SPAN_US:
            raise ConfigurationError(
                f"{owner}: burst {burst} at {self.rate.text!r} would take more than "
                "8 years to refill", value=burst, owner=owner,
            )
        self.burst = burst

    @classmethod
    def parse(cls, value: object, *, burst: int = 1, owner: str = "limit") -> Limit:
        """A :class:`Limit`, a rate, or the text form ``"RATE[,burst=N][,exact]"``."""
        if isinstance(value, Limit):
            return value
        if isinstance(value, str) and "," in value:
            rate, *options = (part.strip() for part in value.split(","))
            exact = False
            for option in options:
                name, _, number = option.partition("=")
                if option == "exact":
                    exact = True
                elif name == "burst" and number.isascii() and number.isdigit():
                    burst = int(number)
                else:
                    raise ConfigurationError(
                        f"{owner}: invalid limit {value!r}: options are 'burst=N' and 'exact'",
                        value=value, owner=owner)
            return cls(rate, burst=burst, exact=exact, owner=owner)
        return cls(value, burst=burst, owner=owner)  # type: ignore[arg-type]

    @property
    def capacity(self) -> int:
        """The largest cost one decision can ever be granted."""
        return int(self.rate.count) if self.exact else self.burst

    @property
    def spec(self) -> str:
        """The limit as ``lua/acquire.lua`` reads it."""
        if self.exact:
            period = round(self.rate.period * 1_000_000)
            return f"w{period + min(period // 20, _WINDOW_GUARD_US)}:{int(self.rate.count)}"
        return f"b{self.rate.interval_us}:{self.burst}"

    def __str__(self) -> str:
        return self.rate.text + (",exact" if self.exact else
                                 f",burst={self.burst}" if self.burst != 1 else "")

    def __repr__(self) -> str:
        return f"Limit({self!s})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Limit) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.spec)


#: A per-key throttle's key: a template over the task's arguments (``"{tenant}"``, ``"{0}"``)
#: or a callable given the task's arguments (``lambda tenant, **_: tenant``).
KeyFunc = Callable[..., object]


def encode_key(value: object) -> str:
    """The part of a bucket's Redis key that stands for ``value`` (compared as text).

    Short plain text (64 of ``A-Z a-z 0-9 . _ ~ -``) stays readable, after ``=``; anything else
    is its SHA-256 after ``#``. Neither form holds ``{``, ``}`` or ``:``, so a key can never
    leave its throttle's namespace or hash tag, and two distinct texts never share a bucket.
    """
    text = value if isinstance(value, str) else str(value)
    if _PLAIN_KEY.match(text):
        return "=" + text
    return "#" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Throttle:
    """A named set of limits shared by every caller that uses the same name and Redis.

    Args:
        name: the throttle's name; every worker using this name shares its buckets.
        *limits: limits that must all allow a start (``"10/s"``, ``"10000/d"``,
            ``Limit("20/10s", exact=True)``); zero when only ``concurrency`` is wanted.
        burst: the burst of the limits given as text or numbers (default 1).
        concurrency: at most this many admissions hold a lease at once, fleet-wide.
        lease: seconds a concurrency lease lasts unless renewed (a worker renews the leases
            of its running tasks; a killed worker's lease lapses after this long).
        key: one bucket per key: a template over the task's arguments (``"{tenant}"``) or a
            callable given them. ``None``: one bucket for everyone.
        on_error: what a task does when Redis fails during its decision: ``"defer"``
            (re-queue with backoff), ``"allow"`` (run unthrottled, logged and signalled) or
            ``"raise"`` (fail with ``BackendError``); ``None``: the app's
            ``taskthrottle_on_backend_error``.
        redis: a client (or URL) to use when a method is called without one.

    Raises:
        ConfigurationError: a bad name, limit, burst, concurrency, lease, key or on_error; the
            message names the throttle.
    """

    __slots__ = ("__weakref__", "_args", "_client", "_keys", "concurrency", "key", "lease",
                 "limits", "name", "on_error", "spec")

    def __init__(
        self, name: str, *limits: str | float | Rate | Limit, burst: int = 1,
        concurrency: int | None = None, lease: float = 60.0, key: str | KeyFunc | None = None,
        on_error: str | None = None, redis: _redis.Redis | str | None = None,
    ) -> None:
        self.name = validate_name(name)
        owner = f"throttle {name!r}"
        self.limits = tuple(Limit.parse(limit, burst=burst, owner=owner) for limit in limits)
        if concurrency is not None and (isinstance(concurrency, bool)
                                        or not isinstance(concurrency, int) or concurrency < 1):
            raise ConfigurationError(
                f"{owner}: invalid concurrency {concurrency!r}: expected an integer >= 1",
                value=concurrency, owner=owner)
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) \
                or not 0.1 <= lease <= 86400:
            raise ConfigurationError(
                f"{owner}: invalid lease {lease!r}: expected seconds from 0.1 to 86400",
                value=lease, owner=owner)
        if not self.limits and concurrency is None:
            raise ConfigurationError(
                f"{owner}: give at least one limit (such as '10/s') or a concurrency",
                value=limits, owner=owner)
        if on_error is not None and on_error not in ON_ERROR:
            raise ConfigurationError(
                f"{owner}: invalid on_error {on_error!r}: expected one of {', '.join(ON_ERROR)}",
                value=on_error, owner=owner)
        self.on_error = on_error
        self.concurrency = concurrency
        self.lease = float(lease)
        self.key = _check_key(key, owner)
        self.spec = " ".join(limit.spec for limit in self.limits)
        _claim_name(self)
        self._client: Any = redis
        self._keys: dict[tuple[str, str | None], tuple[str, str]] = {}
        self._args: dict[tuple[int, bool, float, float], tuple[bytes, ...]] = {}

    def __repr__(self) -> str:
        parts = [repr(self.name), *(repr(str(limit)) for limit in self.limits)]
        if self.concurrency is not None:
            parts.append(f"concurrency={self.concurrency}")
        if self.key is not None:
            parts.append(f"key={self.key!r}")
        return f"Throttle({', '.join(parts)})"

    @property
    def rate(self) -> Rate | None:
        """The first limit's rate (``None`` for a concurrency-only throttle)."""
        return self.limits[0].rate if self.limits else None

    @property
    def burst(self) -> int:
        """The first limit's burst (1 for a concurrency-only throttle)."""
        return self.limits[0].burst if self.limits else 1

    @property
    def capacity(self) -> int:
        """The largest cost one decision can be granted: the smallest limit's capacity."""
        return min((limit.capacity for limit in self.limits), default=2**31)

    @property
    def interval_us(self) -> int:
        """The shortest spacing between starts any limit asks for (microseconds; 0 if none)."""
        return min((limit.rate.interval_us for limit in self.limits), default=0)

    def key_for(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
                named: dict[str, Any] | None = None) -> str | None:
        """The bucket key of a call with these arguments (``None`` for an unkeyed throttle).

        A template is filled from ``args`` and ``named`` (every argument by its parameter name,
        however it was passed; default ``kwargs``); a callable is called as the task is.

        Raises:
            ConfigurationError: the key template or callable does not fit the arguments.
        """
        if self.key is None:
            return None
        kwargs = kwargs or {}
        try:
            if isinstance(self.key, str):
                return self.key.format(*args, **(kwargs if named is None else named))
            return str(self.key(*args, **kwargs))
        except Exception as exc:  # the key callable or a value's __format__ is user code
            raise ConfigurationError(
                f"throttle {self.name!r}: key {self.key!r} does not fit the arguments "
                f"args={tuple(args)!r} kwargs={kwargs!r}: {exc!r}", value=self.key,
                owner=f"throttle {self.name!r}") from exc

    def redis_key(self, key: object = None, prefix: str = DEFAULT_PREFIX) -> str:
        """The Redis key of a bucket's state; the throttle's name is its hash tag (one cluster
        slot for every key of the throttle). Windows and leases add ``:w<period>`` and ``:c``."""
        return self._bucket(key, prefix)[0]

    def control_key(self, prefix: str = DEFAULT_PREFIX) -> str:
        """The Redis hash of the throttle's override and throttle-wide pause."""
        return f"{prefix}{{{self.name}}}:o"

    def _bucket(self, key: object, prefix: str) -> tuple[str, str]:
        if (key is None) != (self.key is None):
            raise ConfigurationError(
                f"throttle {self.name!r}: " + ("a keyed throttle needs key=" if key is None
                                               else "an unkeyed throttle takes no key="),
                value=key, owner=f"throttle {self.name!r}")
        text = None if key is None else encode_key(key)
        found = self._keys.get((prefix, text))
        if found is None:
            base = f"{prefix}{{{self.name}}}"
            found = (base if text is None else f"{base}:k:{text}", f"{base}:o")
            if len(self._keys) < 4096:  # per-key throttles: cache the busy keys, not every key
                self._keys[(prefix, text)] = found
        return found

    def acquire(
        self,
        cost: int = 1,
        *,
        key: object = None,
        redis: _redis.Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        reserve: bool = False,
        reservation: int | Decision | None = None,
        max_delay: float = 300.0,
        max_inline_wait: float = 0.0,
        lease: str | None = None,
        peek: bool = False,
        not_before: int = 0,
    ) -> Decision:
        """Ask for ``cost`` tokens from every limit now, in one round trip.

        Args:
            cost: tokens to take (1 to :attr:`capacity`).
            key: the bucket of a keyed throttle (see :meth:`key_for`).
            redis: the client to use; defaults to the one given to the constructor.
            prefix: the namespace of the throttle's keys.
            reserve: when denied, hold the next free slot (if within ``max_delay``).
            reservation: the earlier RESERVED decision being claimed (or its ``slot``; the
                decision itself also names its exact-window entries, so pass it when you can),
                or a GRANTED one being moved to a later start (``not_before``).
            max_delay: the furthest ahead, in seconds, a slot may be reserved.
            max_inline_wait: a start at most this many seconds ahead is GRANTED with that
                ``wait``; the caller is expected to sleep it out before starting.
            lease: the lease id to hold under a concurrency cap (default: a new one).
            peek: take nothing: answer DENIED (or BUSY) with the wait a request would have.
            not_before: Redis microseconds: start no earlier (another throttle of the same
                start allows it only then).

        Raises:
            ConfigurationError: ``cost`` out of range (also: above an override's limits),
                bad options, or no Redis client.
            BackendError: Redis failed or could not be reached.
        """
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= self.capacity:
            raise ConfigurationError(
                f"throttle {self.name!r}: cost {cost!r} must be an integer from 1 to "
                f"{self.capacity} (what its limits can grant)", value=cost,
                owner=f"throttle {self.name!r}",
            )
        client = redis if redis is not None else self._default_client()
        if peek:
            reserve, max_inline_wait = False, -1.0  # never reserved, never granted
        args = self._args.get((cost, reserve, max_delay, max_inline_wait))
        if args is None:  # first call with these options: check them once, then encode them
            for label, seconds in (("max_delay", max_delay), ("max_inline_wait", max_inline_wait)):
                if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                        or not (0 <= seconds < 10**9 or (peek and seconds == -1.0)):
                    raise ConfigurationError(
                        f"throttle {self.name!r}: {label} {seconds!r} must be a number of "
                        "seconds >= 0", value=seconds, owner=f"throttle {self.name!r}",
                    )
            cap = (f"{self.concurrency}:{round(self.lease * 1_000_000)}"
                   if self.concurrency is not None else "")
            args = self._args[(cost, reserve, max_delay, max_inline_wait)] = tuple(
                str(arg).encode() for arg in (
                    self.spec, cost, 0, round(max_delay * 1_000_000) if reserve else -1,
                    round(max_inline_wait * 1_000_000), "", cap,
                )
            )
        if self.concurrency is not None:
            lease = lease or uuid.uuid4().hex
        held, slot, regrant = 0, reservation, 0
        if isinstance(reservation, Decision):
            held, slot = reservation.ticket, reservation.slot
            regrant = int(reservation.outcome is Outcome.GRANTED)
        if slot or lease:
            args = (*args[:2], str(slot or 0).encode(), *args[3:5],
                    (lease or "").encode(), args[6])
        args = (*args, str(held).encode(), str(int(not_before)).encode(), b"%d" % regrant)
        reply = self._run("acquire", key, prefix, args, client)
        code, wait, slot, now, ticket, paused = reply.split()
        if code == b"5":
            raise ConfigurationError(
                f"throttle {self.name!r}: cost {cost} exceeds what its limits (as overridden "
                "in Redis) can ever grant", value=cost, owner=f"throttle {self.name!r}")
        outcome = _OUTCOMES[int(code)]
        held_lease = lease if outcome is Outcome.GRANTED and self.concurrency is not None \
            else None
        return Decision(outcome, int(wait) / 1_000_000, int(slot) or None, int(now),
                        int(ticket), int(paused), held_lease)

    def give_back(self, decision: Decision, cost: int = 1, *, key: object = None,
                  redis: _redis.Redis | None = None, prefix: str = DEFAULT_PREFIX) -> bool:
        """Undo a GRANTED or RESERVED decision that will not be used (its lease, its window
        entries, and its bucket tokens if nothing was taken after it).

        Returns:
            whether the bucket tokens came back (window entries and leases always do).
        """
        if decision.slot is None or decision.outcome not in (Outcome.GRANTED, Outcome.RESERVED):
            return False
        args = (self.spec, cost, int(decision.outcome), decision.slot, decision.ticket,
                decision.lease or "")
        client = redis if redis is not None else self._default_client()
        return bool(self._run("give_back", key, prefix, args, client))

    def pause(self, seconds: float, *, key: object = None, redis: _redis.Redis | None = None,
              prefix: str = DEFAULT_PREFIX) -> float:
        """Let nothing start for ``seconds`` (Redis clock): for every bucket of the throttle, or
        only the bucket of ``key``. A pause only grows; :meth:`resume` lifts it.

        Returns:
            the end of the pause, in seconds since the epoch on the Redis clock.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not 0 <= seconds <= 86400 * 366:
            raise ConfigurationError(
                f"throttle {self.name!r}: pause {seconds!r} must be seconds from 0 to a year",
                value=seconds, owner=f"throttle {self.name!r}")
        return self._pause(round(seconds * 1_000_000), key, redis, prefix) / 1_000_000

    def resume(self, *, key: object = None, redis: _redis.Redis | None = None,
               prefix: str = DEFAULT_PREFIX) -> None:
        """Lift a pause (the throttle-wide one and the unkeyed bucket's, or that of ``key``)."""
        self._pause(-1, key, redis, prefix)

    def _pause(self, span: int, key: object, redis: _redis.Redis | None, prefix: str) -> int:
        client = redis if redis is not None else self._default_client()
        if key is None and self.key is not None:
            target = ("control", self.control_key(prefix))
        else:
            target = ("bucket", self._bucket(key, prefix)[0])
        until = int(self._call("pause", (target[1],), (target[0], span), client))
        if span < 0 and target[0] == "bucket" and key is None:
            self._call("pause", (self.control_key(prefix),), ("control", span), client)
        return until

    def paused_until(self, *, key: object = None, redis: _redis.Redis | None = None,
                     prefix: str = DEFAULT_PREFIX) -> int:
        """Until when (Redis microseconds) a start from this bucket is paused; 0 if it is not
        (or a pause ended: compare with the Redis clock). One read, no decision."""
        client = redis if redis is not None else self._default_client()
        bucket, control = self._bucket(key, prefix)
        try:
            pipe = client.pipeline(transaction=False)
            pipe.get(bucket)
            pipe.hget(control, "pause")
            state, pause = pipe.execute()
        except redis_errors as exc:
            raise BackendError(f"throttle {self.name!r}: reading its pause failed: {exc}",
                               throttle=self.name) from exc
        own = state.split(b" ", 2)[1] if state and state.count(b" ") >= 1 else b"0"
        return max(int(own or 0), int(pause or 0))

    def renew(self, lease: str, *, key: object = None, redis: _redis.Redis | None = None,
              prefix: str = DEFAULT_PREFIX) -> int:
        """Extend a concurrency lease by :attr:`lease` seconds.

        Returns:
            1 if it was held; 2 if it had lapsed and was taken again (the cap had room);
            0 if it had lapsed and the cap is full: the cap no longer holds for this task.
        """
        client = redis if redis is not None else self._default_client()
        return int(self._call("lease", (self._bucket(key, prefix)[0] + ":c",),
                              ("renew", lease, round(self.lease * 1_000_000),
                               self.concurrency or 1), client))

    def release(self, lease: str, *, key: object = None, redis: _redis.Redis | None = None,
                prefix: str = DEFAULT_PREFIX) -> bool:
        """Give a concurrency lease back; False if it had lapsed (nothing else is freed)."""
        client = redis if redis is not None else self._default_client()
        return bool(self._call("lease", (self._bucket(key, prefix)[0] + ":c",),
                               ("release", lease, 0, 0), client))

    def wait(
        self,
        cost: int = 1,
        *,
        key: object = None,
        redis: _redis.Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_delay: float = 300.0,
        max_inline_wait: float = 0.25,
        lease: str | None = None,
    ) -> float:
        """Block until ``cost`` tokens are granted, holding a reservation while asleep.

        A concurrency cap is polled (every 0.05–1 s). With ``lease``, the grant's lease is
        kept (release it with :meth:`release` when the work ends); without, it is released
        at once.

        Returns:
            the seconds waited, on the Redis clock.

        Raises:
            ConfigurationError, BackendError: as :meth:`acquire`.
        """
        slot: Decision | None = None
        first: int | None = None
        while True:
            decision = self.acquire(cost, key=key, redis=redis, prefix=prefix, reserve=True,
                                    reservation=slot, max_delay=max_delay,
                                    max_inline_wait=max_inline_wait, lease=lease)
            first = decision.now if first is None else first
            if decision.outcome is Outcome.BUSY:
                time.sleep(min(max(decision.wait, 0.05), 1.0))
            else:
                time.sleep(decision.wait)
            if decision.granted:
                if decision.lease and lease is None:
                    self.release(decision.lease, key=key, redis=redis, prefix=prefix)
                return (decision.now - first) / 1_000_000 + decision.wait
            slot = decision if decision.slot else None

    def _run(self, script: str, key: object, prefix: str, args: Sequence[Any],
             client: Any) -> Any:
        return self._call(script, self._bucket(key, prefix), args, client)

    def _call(self, script: str, keys: Sequence[str], args: Sequence[Any],
              client: Any) -> Any:
        try:
            return _scripts.script(client, script)(keys=keys, args=args, client=client)
        except redis_errors as exc:
            raise BackendError(
                f"throttle {self.name!r}: {script} failed: {exc}", throttle=self.name
            ) from exc

    def _default_client(self) -> Any:
        if self._client is None:
            raise ConfigurationError(
                f"throttle {self.name!r}: no Redis client: pass redis= to the call or to "
                "Throttle()", owner=f"throttle {self.name!r}",
            )
        if isinstance(self._client, str):
            self._client = _redis.Redis.from_url(self._client)
        return self._client


def _check_key(key: object, owner: str) -> str | KeyFunc | None:
    if key is None or callable(key):
        return key
    if isinstance(key, str):
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(key) if f is not None]
        except ValueError as exc:
            raise ConfigurationError(f"{owner}: invalid key template {key!r}: {exc}",
                                     value=key, owner=owner) from None
        if fields:
            return key
    raise ConfigurationError(
        f"{owner}: key must be a template over the task's arguments such as '{{tenant}}' or "
        f"'{{0}}', or a callable, not {key!r}", value=key, owner=owner)


#: What a call into redis-py may raise when the store or its URL is wrong; ValueError and
#: TypeError come from connection options checked only when a connection opens.
redis_errors = (_redis.RedisError, _redis.exceptions.RedisClusterException, OSError,
                ValueError, TypeError)
#: The longest a bucket may take to refill (keeps every timestamp an exact Lua number).
_MAX_SPAN_US = 2**48
#: An exact window is kept this much longer than its period (at most; 1/20 of a short period):
#: a body starts a little after its decision, and a start that comes a few milliseconds late
#: must not share a window with the start one period after its slot.
_WINDOW_GUARD_US = 50_000
_names: weakref.WeakValueDictionary[str, Throttle] = weakref.WeakValueDictionary()
_names_lock = threading.Lock()


def _claim_name(throttle: Throttle) -> None:
    """One name, one limit: two different limits under one name would share a bucket and
    each be broken by the other, so the second definition in a process is refused."""
    with _names_lock:
        other = _names.get(throttle.name)
        if other is not None and _identity(other) != _identity(throttle):
            raise ConfigurationError(
                f"throttle {throttle.name!r} is already defined as {other!r}: one name is one "
                f"set of buckets, so it cannot also be {throttle!r}; use another name",
                value=throttle.name, owner=f"throttle {throttle.name!r}",
            )
        if other is None:
            _names[throttle.name] = throttle


def _identity(throttle: Throttle) -> tuple[object, ...]:
    return (throttle.spec, throttle.concurrency, throttle.lease, throttle.key is None)


_OUTCOMES: dict[int, Outcome] = {outcome.value: outcome for outcome in Outcome}
