"""taskthrottle: one shared rate limit for a whole Celery fleet, decided atomically on Redis."""

from __future__ import annotations

from . import hooks as _hooks  # noqa: F401  (connects the lifecycle receivers)
from .exceptions import BackendError, ConfigurationError, TaskThrottleError
from .rate import Rate
from .signals import task_admitted, task_throttled
from .task import ThrottledTask
from .throttle import Decision, Outcome, Throttle

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigurationError",
    "Decision",
    "Outcome",
    "Rate",
    "TaskThrottleError",
    "Throttle",
    "ThrottledTask",
    "__version__",
    "task_admitted",
    "task_throttled",
]
