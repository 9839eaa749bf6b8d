"""taskthrottle: one shared rate limit for a whole Celery fleet, decided atomically on Redis."""

from __future__ import annotations

from . import hooks as _hooks  # noqa: F401  (connects the lifecycle receivers)
from .exceptions import BackendError, ConfigurationError, RateLimited, TaskThrottleError
from .rate import Rate, parse_retry_after
from .signals import task_admitted, task_throttled, task_unthrottled
from .task import ThrottledTask
from .throttle import Decision, Limit, Outcome, Throttle

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigurationError",
    "Decision",
    "Limit",
    "Outcome",
    "Rate",
    "RateLimited",
    "TaskThrottleError",
    "Throttle",
    "ThrottledTask",
    "__version__",
    "parse_retry_after",
    "task_admitted",
    "task_throttled",
    "task_unthrottled",
]
