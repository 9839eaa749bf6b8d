"""The small exception tree of taskthrottle; data travels as attributes."""

from __future__ import annotations


class TaskThrottleError(Exception):
    """Base of every error taskthrottle raises."""


class ConfigurationError(TaskThrottleError, ValueError):
    """A limit, throttle or setting is invalid.

    Attributes:
        value: the offending value, as given.
        owner: what it belongs to (a task name, a throttle name or a setting), if known.
    """

    def __init__(self, message: str, *, value: object = None, owner: str | None = None) -> None:
        super().__init__(message)
        self.value = value
        self.owner = owner

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only attributes survive pickling (Celery pickles errors of eager runs).
        return _rebuild, (type(self), str(self), {"value": self.value, "owner": self.owner})


class BackendError(TaskThrottleError):
    """Redis could not be reached or answered with an error during a decision.

    Attributes:
        throttle: the name of the throttle whose decision failed.
    """

    def __init__(self, message: str, *, throttle: str = "") -> None:
        # ``throttle`` has a default so that a result backend can rebuild the error from its
        # message alone (Celery calls ``cls(*args)``): a failed task then shows BackendError.
        super().__init__(message)
        self.throttle = throttle

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), str(self), {"throttle": self.throttle})


def _rebuild(cls: type[TaskThrottleError], message: str, attrs: dict[str, object]) -> Exception:
    return cls(message, **attrs)


class RateLimited(TaskThrottleError):
    """Raise from a task body when the vendor said stop (HTTP 429, a quota error).

    The task's throttles (or only ``throttle``, by name) are paused for every worker for
    ``retry_after`` seconds, this task is deferred past the pause (not retried, not failed) and
    tasks arriving meanwhile are deferred without calling the vendor.

    Args:
        retry_after: seconds, or an HTTP ``Retry-After`` value (seconds or an HTTP date). When
            missing or unreadable, ``default`` is used and the reason is kept in :attr:`note`.
        throttle: the name of the one throttle to pause (default: all of the task's).
        default: the pause when ``retry_after`` gives none.

    Attributes:
        retry_after: the pause, in seconds.
        throttle: as given.
        note: why ``default`` was used, or ``None``.
    """

    def __init__(self, retry_after: object = None, *, throttle: str | None = None,
                 default: float = 1.0) -> None:
        from .rate import parse_retry_after

        self.note: str | None = None
        if isinstance(default, bool) or not isinstance(default, (int, float)) \
                or not 0 <= default <= 366 * 86400:  # NaN fails this too
            default = 1.0
        seconds = float(default)
        if retry_after is None:
            self.note = f"no Retry-After given: paused {default:g} s"
        else:
            try:
                seconds = parse_retry_after(retry_after)
            except ConfigurationError as exc:
                self.note = f"{exc}: paused {default:g} s"
        self.retry_after = seconds
        self.throttle = throttle
        super().__init__(f"rate limited upstream: retry after {seconds:g} s"
                         + (f" ({self.note})" if self.note else ""))

    @classmethod
    def from_headers(cls, headers: object, *, throttle: str | None = None,
                     default: float = 1.0) -> RateLimited:
        """From a response's headers (any mapping; the name is matched case-insensitively)."""
        value = None
        items = getattr(headers, "items", None)
        if callable(items):
            for name, item in items():
                if str(name).lower() == "retry-after":
                    value = item
        return cls(value, throttle=throttle, default=default)

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild_rate_limited, (self.retry_after, self.throttle)


def _rebuild_rate_limited(retry_after: float, throttle: str | None) -> RateLimited:
    return RateLimited(retry_after, throttle=throttle)
