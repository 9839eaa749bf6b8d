"""What the operator commands read from Redis and write to it; this presents, never decides.

Every function takes a Redis client and returns plain data (dataclasses of text and numbers);
``cli.py`` formats it. "Now" is always the Redis clock (``TIME``), the one every decision uses.
The layout read here is the one ``lua/acquire.lua`` documents, under a prefix, for throttle
``N``:

* ``prefix{N}``: the bucket of an unkeyed throttle, ``"<version> <pause> {<id> <tat> <sat>}"``;
  ``prefix{N}:k:<key>``: the bucket of one key of a keyed throttle (same format);
* ``<bucket>:w<period>``: an exact window (sorted set of start times); ``<bucket>:c``: the
  concurrency leases (sorted set scored by expiry);
* ``prefix{N}:o``: the throttle's control hash (``spec``, ``text``, ``since``, ``pause``).

Reads are not atomic with decisions: a snapshot may be a few milliseconds stale, never wrong
about what is stored.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _scripts, config
from .exceptions import ConfigurationError
from .task import ThrottledTask
from .throttle import DEFAULT_PREFIX, Limit, Throttle, encode_key, validate_name

__all__ = [
    "BucketState",
    "LimitState",
    "Override",
    "ThrottleStatus",
    "app_throttles",
    "key_kind",
    "pause",
    "redact_url",
    "reset",
    "resume",
    "scrub",
    "set_override",
    "status",
    "unset_override",
]

_SPEC = re.compile(r"([bw])(\d+):(\d+)")
_TAIL = re.compile(r"^(?::k:(?P<enc>[=#][^:]+))?(?P<sub>:o|:c|:w\d+)?$")
_PASSWORD_QUERY = re.compile(r"(?i)([?&]password=)[^&#]*")
_UNITS = (("s", 1), ("m", 60), ("h", 3600), ("d", 86400))
_SECOND = 1_000_000
_MAX_PAUSE = 86400 * 366


# --- the data ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit of one bucket, now.

    Attributes:
        limit: the limit as text (``"10/s,burst=5"``, ``"20/10s,exact"``).
        spec: the limit as the scripts read it (``"b100000:5"``, ``"w10000000:20"``).
        exact: an exact sliding window (else a token bucket).
        capacity: the bucket's burst or the window's count (``None``: not known, a window
            seen only in Redis).
        left: tokens (bucket) or quota (window) that could start now (``None``: not known).
        next_free: seconds from now until this limit lets one more start (0: now).
    """

    limit: str
    spec: str
    exact: bool
    capacity: int | None
    left: int | None
    next_free: float

    def as_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "spec": self.spec, "exact": self.exact,
                "capacity": self.capacity, "left": self.left,
                "next_free": _round(self.next_free)}


@dataclass(frozen=True, slots=True)
class BucketState:
    """One bucket (the throttle's, or one key's), now.

    Attributes:
        key: the key as text (``None``: the unkeyed bucket, or a key stored as a hash).
        key_id: the key as stored in the bucket's name (``"=tenant-a"``, ``"#<sha256>"``).
        limits: each limit in force (the override's, else the code's).
        next_free: seconds from now until every limit and pause lets one more start.
        paused_until: seconds from now until the pause that holds this bucket ends (its
            own or the throttle's, whichever is later; 0: not paused).
        leases: concurrency leases held now.
        stored: whether Redis holds anything for this bucket (nothing: every limit is full).
    """

    key: str | None
    key_id: str | None
    limits: tuple[LimitState, ...]
    next_free: float
    paused_until: float
    leases: int
    stored: bool

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "key_id": self.key_id,
                "limits": [limit.as_dict() for limit in self.limits],
                "next_free": _round(self.next_free),
                "paused_until": _round(self.paused_until), "leases": self.leases,
                "stored": self.stored}


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's override of a throttle's limits.

    Attributes:
        text: the limits as the operator wrote them (``"5/s 100/m"``).
        spec: the limits as the scripts read them.
        since: when it was set, in seconds since the epoch on the Redis clock.
    """

    text: str
    spec: str
    since: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "spec": self.spec, "since": self.since}


@dataclass(frozen=True, slots=True)
class ThrottleStatus:
    """One throttle, now.

    Attributes:
        name: the throttle's name.
        defined: known from code (the app's tasks and settings), not only from Redis.
        keyed: one bucket per key (``None``: not known, a throttle seen only in its control
            hash).
        limits: the code's limits as text (``None``: not defined here).
        concurrency: the code's concurrency cap (per bucket; ``None``: none or not known).
        override: the operator's override, if one is set.
        paused_until: seconds from now until the throttle-wide pause ends (for an unkeyed
            throttle, also its bucket's own pause; 0: not paused).
        bucket: the unkeyed throttle's bucket (``None`` for a keyed throttle).
        keys: how many per-key buckets Redis holds.
        key_states: each per-key bucket (only when asked for).
        leases: concurrency leases held now, over every bucket of the throttle.
        now: the Redis clock at the snapshot, in seconds since the epoch.
    """

    name: str
    defined: bool
    keyed: bool | None
    limits: tuple[str, ...] | None
    concurrency: int | None
    override: Override | None
    paused_until: float
    bucket: BucketState | None
    keys: int
    leases: int
    now: float
    key_states: tuple[BucketState, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "defined": self.defined, "keyed": self.keyed,
            "limits": None if self.limits is None else list(self.limits),
            "concurrency": self.concurrency,
            "override": None if self.override is None else self.override.as_dict(),
            "paused_until": _round(self.paused_until),
            "bucket": None if self.bucket is None else self.bucket.as_dict(),
            "keys": self.keys, "leases": self.leases,
            "key_states": [state.as_dict() for state in self.key_states],
            "now": round(self.now, 6),
        }


# --- where throttles come from ----------------------------------------------------------------

def app_throttles(app: Any) -> tuple[dict[str, Throttle], config.Settings]:
    """The throttles an app defines (its tasks', then its ``taskthrottle_throttles``), by name,
    and its validated settings.

    Raises:
        ConfigurationError: the app's settings are invalid.
    """
    settings = config.load(app)
    app.loader.import_default_modules()  # the modules of `include` and `imports` define tasks
    found: dict[str, Throttle] = {}
    tasks = app.tasks  # finalizes the app
    for name in sorted(tasks):
        task = tasks[name]
        if isinstance(task, ThrottledTask):
            for throttle in task.throttles(settings):
                found.setdefault(throttle.name, throttle)
    for _, throttles in settings.by_name:
        for throttle in throttles:
            found.setdefault(throttle.name, throttle)
    return found, settings


def redact_url(url: str) -> str:
    """The URL without its password (in the user part or a ``password=`` query option)."""
    return _PASSWORD_QUERY.sub(r"\1***", config._redact(url))


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` redacted and its password, if any, masked."""
    text = text.replace(url, redact_url(url))
    try:
        parts = urllib.parse.urlsplit(url)
        secrets = [parts.password or ""]
    except ValueError:
        secrets = []
    secrets += [value for name, value in urllib.parse.parse_qsl(url.partition("?")[2])
                if name.lower() == "password"]
    for secret in secrets:
        for form in {secret, urllib.parse.unquote(secret)}:
            if len(form) >= 3:
                text = text.replace(form, "***")
    return text


@dataclass(slots=True)
class _Seen:
    """What a SCAN found of one bucket."""

    bucket: bool = False
    windows: set[int] = field(default_factory=set)
    leases: bool = False

    @property
    def found(self) -> bool:
        return self.bucket or self.leases or bool(self.windows)


@dataclass(slots=True)
class _SeenThrottle:
    control: bool = False
    own: _Seen = field(default_factory=_Seen)
    keys: dict[str, _Seen] = field(default_factory=dict)


def _parse_key(raw: bytes | str, prefix: str) -> tuple[str, str | None, str] | None:
    """``(name, encoded key or None, suffix)`` of one of our keys, else ``None``."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    start = prefix + "{"
    if not text.startswith(start):
        return None
    name, sep, tail = text[len(start):].partition("}")
    match = _TAIL.match(tail)
    if not sep or match is None:
        return None
    try:
        validate_name(name)
    except ConfigurationError:
        return None
    enc, sub = match.group("enc"), match.group("sub") or ""
    if enc is not None and sub == ":o":
        return None
    return name, enc, sub


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def _scan(client: Any, prefix: str, names: Sequence[str]) -> dict[str, _SeenThrottle]:
    # One SCAN walks the whole keyspace: one for one name, else one for the whole prefix.
    pattern = (_glob_escape(f"{prefix}{{{names[0]}}}") + "*" if len(names) == 1
               else _glob_escape(prefix + "{") + "*")
    seen: dict[str, _SeenThrottle] = {}
    wanted = set(names)
    for raw in client.scan_iter(match=pattern, count=1000):
        parsed = _parse_key(raw, prefix)
        if parsed is None or (wanted and parsed[0] not in wanted):
            continue
        name, enc, sub = parsed
        entry = seen.setdefault(name, _SeenThrottle())
        if sub == ":o":
            entry.control = True
            continue
        bucket = entry.own if enc is None else entry.keys.setdefault(enc, _Seen())
        if sub == "":
            bucket.bucket = True
        elif sub == ":c":
            bucket.leases = True
        else:
            bucket.windows.add(int(sub[2:]))
    return seen


# --- status -----------------------------------------------------------------------------------

def now_us(client: Any) -> int:
    """The Redis clock, in microseconds."""
    seconds, micros = client.time()
    return int(seconds) * _SECOND + int(micros)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _control(raw: Mapping[Any, Any]) -> tuple[Override | None, int]:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    override = None
    if fields.get("spec"):
        since = fields.get("since")
        override = Override(fields.get("text", ""), fields["spec"],
                            float(since) if since and since.isdigit() else None)
    pause = fields.get("pause", "0")
    return override, int(pause) if pause.isdigit() else 0


def _state(raw: object) -> tuple[int, dict[str, tuple[int, int]]]:
    """``(own pause, {id: (tat, sat)})`` of a bucket's state string."""
    if raw is None:
        return 0, {}
    parts = _text(raw).split()
    try:
        pause = int(parts[1]) if len(parts) > 1 else 0
        ids = {parts[i]: (int(parts[i + 1]), int(parts[i + 2]))
               for i in range(2, len(parts) - 2, 3)}
    except ValueError:
        return 0, {}
    return pause, ids


def spec_text(kind: str, a: int, b: int | None) -> str:
    """A limit as text, from its spec (for limits known only from Redis)."""
    if kind == "w":
        period = a / _SECOND
        count = "?" if b is None else str(b)
        for unit, seconds in reversed(_UNITS):
            if period >= seconds and period % seconds == 0:
                times = int(period // seconds)
                return f"{count}/{'' if times == 1 else times}{unit},exact"
        return f"{count}/{period:g}s,exact"
    rate = ""
    for unit, seconds in _UNITS:
        per = seconds * _SECOND / a
        if per >= 1 and abs(per - round(per)) < 0.01 * per:
            rate = f"{round(per)}/{unit}"
            break
    rate = rate or f"1/{a / _SECOND:g}s"
    return rate + (f",burst={b}" if b is not None and b != 1 else "")


@dataclass(slots=True)
class _Plan:
    """One bucket to read: its Redis key and the limits in force, when known before reading."""

    name: str
    enc: str | None
    key: str
    limits: list[tuple[str, int, int | None]] | None
    texts: dict[str, str]
    windows: list[tuple[int, int | None]]


def _limits_of(spec: str) -> list[tuple[str, int, int | None]]:
    return [(kind, int(a), int(b)) for kind, a, b in _SPEC.findall(spec)]


def status(client: Any, throttles: Mapping[str, Throttle] | None = None,
           names: Sequence[str] = (), *, prefix: str = DEFAULT_PREFIX,
           keys: bool = False) -> list[ThrottleStatus]:
    """The state of throttles: those named (else every one ``throttles`` defines or Redis
    holds under ``prefix``), sorted by name.

    Args:
        client: a Redis client.
        throttles: throttles known from code, by name.
        names: only these throttles (a name nothing knows gets an empty row).
        prefix: the namespace of the throttles' keys.
        keys: also read each per-key bucket of keyed throttles (``key_states``).

    Raises:
        redis.RedisError, OSError: Redis failed.
    """
    known = dict(throttles or {})
    now = now_us(client)
    seen = _scan(client, prefix, names)
    wanted = list(dict.fromkeys(names)) if names else sorted(set(known) | set(seen))

    pipe = client.pipeline(transaction=False)
    for name in wanted:
        pipe.hgetall(f"{prefix}{{{name}}}:o")
    controls = dict(zip(wanted, (_control(raw) for raw in pipe.execute()), strict=True))

    plans: list[_Plan] = []
    lease_sets: list[tuple[str, str]] = []  # (name, key of a lease set of a key not read)
    for name in wanted:
        throttle = known.get(name)
        entry = seen.get(name, _SeenThrottle())
        override = controls[name][0]
        texts = {limit.spec: str(limit) for limit in throttle.limits} if throttle else {}
        if override:  # `set` stores one word per limit, as the operator wrote it
            words = override.text.split()
            specs = [f"{kind}{a}:{b}" for kind, a, b in _SPEC.findall(override.spec)]
            if len(words) == len(specs):
                texts.update(zip(specs, words, strict=True))
        limits = (_limits_of(override.spec) if override
                  else _limits_of(throttle.spec) if throttle else None)
        base = f"{prefix}{{{name}}}"
        keyed = _keyed(throttle, entry)
        if keyed is False:
            plans.append(_Plan(name, None, base, limits, texts, _windows(limits, entry.own)))
        for enc, bucket in sorted(entry.keys.items()):
            if keys and keyed is not False:
                plans.append(_Plan(name, enc, f"{base}:k:{enc}", limits, texts,
                                   _windows(limits, bucket)))
            elif bucket.leases:
                lease_sets.append((name, f"{base}:k:{enc}:c"))

    pipe = client.pipeline(transaction=False)
    for plan in plans:
        pipe.get(plan.key)
        pipe.zcount(plan.key + ":c", f"({now}", "+inf")
        for period, _ in plan.windows:
            pipe.zcount(f"{plan.key}:w{period}", f"({now - period}", "+inf")
    for _, lease_key in lease_sets:
        pipe.zcount(lease_key, f"({now}", "+inf")
    replies = iter(pipe.execute())
    read: list[tuple[object, int, list[int]]] = []
    for plan in plans:
        stored, leases = next(replies), int(next(replies))
        read.append((stored, leases, [int(next(replies)) for _ in plan.windows]))
    other_leases: dict[str, int] = {}
    for name, _ in lease_sets:
        other_leases[name] = other_leases.get(name, 0) + int(next(replies))

    # A full window frees up when its oldest entry in the way leaves it: read that entry.
    pipe = client.pipeline(transaction=False)
    asked: list[tuple[int, int, int]] = []
    for i, (plan, (_, _, live)) in enumerate(zip(plans, read, strict=True)):
        for j, ((period, count), used) in enumerate(zip(plan.windows, live, strict=True)):
            if count is not None and used >= count:
                pipe.zrangebyscore(f"{plan.key}:w{period}", f"({now - period}", "+inf",
                                   start=used - count, num=1, withscores=True)
                asked.append((i, j, period))
    frees: dict[tuple[int, int], int] = {}
    for (i, j, period), entries in zip(asked, pipe.execute() if asked else [], strict=True):
        if entries:
            frees[(i, j)] = int(entries[0][1]) + period

    states: dict[tuple[str, str | None], BucketState] = {}
    for i, (plan, (stored, leases, live)) in enumerate(zip(plans, read, strict=True)):
        states[(plan.name, plan.enc)] = _bucket_state(
            plan, i, stored, leases, live, frees, now, controls[plan.name][1])

    result = []
    for name in wanted:
        throttle = known.get(name)
        entry = seen.get(name, _SeenThrottle())
        override, control_pause = controls[name]
        own = states.get((name, None))
        key_states = tuple(state for (owner, enc), state in states.items()
                           if owner == name and enc is not None)
        paused = max(control_pause, _own_pause(own, now))
        result.append(ThrottleStatus(
            name=name, defined=throttle is not None, keyed=_keyed(throttle, entry),
            limits=tuple(str(limit) for limit in throttle.limits) if throttle else None,
            concurrency=throttle.concurrency if throttle else None,
            override=override,
            paused_until=max(0.0, (paused - now) / _SECOND),
            bucket=own, keys=len(entry.keys),
            leases=(own.leases if own else 0) + sum(s.leases for s in key_states)
            + other_leases.get(name, 0),
            now=now / _SECOND, key_states=key_states,
        ))
    return result


def _windows(limits: list[tuple[str, int, int | None]] | None,
             seen: _Seen) -> list[tuple[int, int | None]]:
    """The windows of a bucket to read: (period, count); count None when not known."""
    if limits is not None:
        return [(a, b) for kind, a, b in limits if kind == "w"]
    return [(period, None) for period in sorted(seen.windows)]


def _keyed(throttle: Throttle | None, entry: _SeenThrottle) -> bool | None:
    if throttle is not None:
        return throttle.key is not None
    if entry.keys:
        return True
    return False if entry.own.found else None


def _own_pause(bucket: BucketState | None, now: int) -> int:
    if bucket is None or not bucket.paused_until:
        return 0
    return now + round(bucket.paused_until * _SECOND)


def _bucket_state(plan: _Plan, index: int, stored: object, leases: int, live: list[int],
                  frees: Mapping[tuple[int, int], int], now: int,
                  control_pause: int) -> BucketState:
    own_pause, ids = _state(stored)
    pause = max(own_pause, control_pause)
    limits = plan.limits
    if limits is None:  # known only from Redis: the buckets its state holds, the windows seen
        limits = [("b", int(i), int(b)) for i, _, b in (id_.partition(":") for id_ in ids)
                  if i.isdigit() and b.isdigit() and int(i) > 0]
        limits += [("w", period, count) for period, count in plan.windows]
    windows = iter(enumerate(live))
    states = []
    at = max(now, pause)
    for kind, a, b in limits:
        spec = f"{kind}{a}:{'' if b is None else b}"
        text = plan.texts.get(spec) or spec_text(kind, a, b)
        if kind == "b":
            assert b is not None
            tat, sat = ids.get(f"{a}:{b}", (now, now))
            ahead = max(0, max(tat, sat) - now)
            left = min(b, max(0, b - math.ceil(ahead / a)))
            free = max(now, tat - (b - 1) * a, sat - (b - 1) * a)
            states.append(LimitState(text, spec, False, b, left, (free - now) / _SECOND))
        else:
            j, used = next(windows)
            free = frees.get((index, j), now)
            states.append(LimitState(text, spec, True, b,
                                     None if b is None else max(0, b - used),
                                     (free - now) / _SECOND))
        at = max(at, free)
    return BucketState(
        key=plan.enc[1:] if plan.enc and plan.enc.startswith("=") else None, key_id=plan.enc,
        limits=tuple(states), next_free=(at - now) / _SECOND,
        paused_until=max(0.0, (pause - now) / _SECOND) if pause > now else 0.0,
        leases=leases, stored=stored is not None or leases > 0 or any(live),
    )


def _round(seconds: float) -> float:
    return round(seconds, 6)


# --- changes ----------------------------------------------------------------------------------

def control_key(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}{{{validate_name(name)}}}:o"


def exists(client: Any, name: str, prefix: str = DEFAULT_PREFIX) -> bool:
    """Whether Redis holds anything of the throttle ``name``."""
    return bool(_scan(client, prefix, [name]))


def set_override(client: Any, name: str, limits: Sequence[Limit], text: str,
                 prefix: str = DEFAULT_PREFIX) -> Override:
    """Store an override of the throttle's limits: every worker obeys it at its next decision
    and until it is removed (the concurrency cap is not overridden)."""
    if not limits:
        raise ConfigurationError("an override needs at least one limit", value=limits)
    spec = " ".join(limit.spec for limit in limits)
    key = control_key(name, prefix)
    _scripts.script(client, "override")(keys=[key], args=[spec, text])
    override, _ = _control(client.hgetall(key))
    return override or Override(text, spec, None)


def unset_override(client: Any, name: str, prefix: str = DEFAULT_PREFIX) -> bool:
    """Remove the override (the code's limits apply again); False if none was set."""
    return bool(_scripts.script(client, "override")(keys=[control_key(name, prefix)],
                                                    args=["", ""]))


def pause(client: Any, name: str, seconds: float, *, throttle: Throttle | None = None,
          key: str | None = None, prefix: str = DEFAULT_PREFIX) -> float:
    """Pause the throttle (every bucket) or one key's bucket; a pause only grows.

    Returns:
        seconds from now until the pause ends (a longer pause already set stands).

    Raises:
        ConfigurationError: bad seconds; a key for an unkeyed throttle.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not 0 <= seconds <= _MAX_PAUSE:
        raise ConfigurationError(f"pause {seconds!r} must be seconds from 0 to a year",
                                 value=seconds)
    if throttle is not None:
        until = round(throttle.pause(seconds, key=key, redis=client, prefix=prefix) * _SECOND)
    else:
        kind, target = _pause_target(name, key, prefix)
        until = int(_scripts.script(client, "pause")(keys=[target],
                                                     args=[kind, round(seconds * _SECOND)]))
    return max(0.0, (until - now_us(client)) / _SECOND)


def resume(client: Any, name: str, *, throttle: Throttle | None = None,
           key: str | None = None, prefix: str = DEFAULT_PREFIX) -> None:
    """Lift a pause: the throttle-wide one (and the unkeyed bucket's), or that of ``key``.

    Raises:
        ConfigurationError: a key for an unkeyed throttle.
    """
    if throttle is not None:
        throttle.resume(key=key, redis=client, prefix=prefix)
        return
    run = _scripts.script(client, "pause")
    kind, target = _pause_target(name, key, prefix)
    run(keys=[target], args=[kind, -1])
    if key is None:
        bucket = f"{prefix}{{{name}}}"
        if client.exists(bucket):
            run(keys=[bucket], args=["bucket", -1])


def _pause_target(name: str, key: str | None, prefix: str) -> tuple[str, str]:
    if key is None:
        return "control", control_key(name, prefix)
    return "bucket", f"{prefix}{{{validate_name(name)}}}:k:{encode_key(key)}"


def reset(client: Any, name: str, *, key: str | None = None, prefix: str = DEFAULT_PREFIX,
          everything: bool = False) -> list[str]:
    """Delete buckets' state, windows and leases: of ``key``'s bucket, else of every bucket of
    the throttle; with ``everything`` (no key) also the control hash (override and pause).

    Returns:
        the Redis keys deleted, sorted.
    """
    validate_name(name)
    if key is not None and everything:
        raise ConfigurationError("reset of one key keeps the throttle's override and pause",
                                 value=key)
    enc = None if key is None else encode_key(key)
    base = _glob_escape(f"{prefix}{{{name}}}")
    pattern = base + "*" if enc is None else base + _glob_escape(f":k:{enc}") + "*"
    victims: list[bytes | str] = []
    for raw in client.scan_iter(match=pattern, count=1000):
        parsed = _parse_key(raw, prefix)
        if parsed is None or parsed[0] != name or (enc is not None and parsed[1] != enc):
            continue
        if parsed[2] == ":o" and not everything:
            continue
        victims.append(raw)
    deleted = sorted(_text(raw) for raw in victims)
    for batch in _batches(victims, 500):
        client.delete(*batch)
    return deleted


def key_kind(key: str, prefix: str = DEFAULT_PREFIX) -> str:
    """What one of the throttle keys holds: "state", "window", "leases" or "control"."""
    parsed = _parse_key(key, prefix)
    sub = parsed[2] if parsed else ""
    return {"": "state", ":c": "leases", ":o": "control"}.get(sub, "window")


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
