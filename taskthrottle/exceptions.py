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

    def __init__(self, message: str, *, throttle: str) -> None:
        super().__init__(message)
        self.throttle = throttle

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), str(self), {"throttle": self.throttle})


def _rebuild(cls: type[TaskThrottleError], message: str, attrs: dict[str, object]) -> Exception:
    return cls(message, **attrs)
