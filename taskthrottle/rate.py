"""Parse and represent limits such as ``"10/s"``, ``"100/m"``, ``"5/30s"``; pure, no I/O."""

from __future__ import annotations

import email.utils
import math
import re
import time
from dataclasses import dataclass

from .exceptions import ConfigurationError

_UNITS: dict[str, float] = {
    "ms": 0.001, "msec": 0.001,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_GRAMMAR = re.compile(
    rf"^\s*(?P<count>{_NUMBER})\s*(?:/\s*(?P<mult>{_NUMBER})?\s*(?P<unit>[a-z]+))?\s*$",
    re.IGNORECASE,
)
GRAMMAR_HELP = "expected 'N' (per second) or 'N/unit' or 'N/Kunit', unit one of ms, s, m, min, h, d"


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` admissions per ``period`` seconds.

    Attributes:
        count: admissions per period; positive, may be fractional.
        period: the period in seconds; positive.
        text: the limit as written.
    """

    count: float
    period: float
    text: str

    @classmethod
    def parse(cls, value: object, *, owner: str = "limit") -> Rate:
        """Parse Celery's grammar (``"10"``, ``"10/s"``, ``"10/m"``, ``"10/h"``) plus ``"5/30s"``,
        ``"100/min"``, ``"1000/d"``.

        Raises:
            ConfigurationError: the value is not a positive limit; the message names ``owner``.
        """
        if isinstance(value, Rate):
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigurationError(
                f"{owner}: invalid rate {value!r}: {GRAMMAR_HELP}", value=value, owner=owner
            )
        text = str(value)
        match = _GRAMMAR.match(text)
        unit = (match.group("unit") or "s").lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ConfigurationError(
                f"{owner}: invalid rate {text!r}: {GRAMMAR_HELP}", value=value, owner=owner
            )
        count = float(match.group("count"))
        multiplier = float(match.group("mult")) if match.group("mult") else 1.0
        period = multiplier * _UNITS[unit]
        if not (count > 0 and math.isfinite(count)):
            raise ConfigurationError(
                f"{owner}: invalid rate {text!r}: the count must be positive", value=value,
                owner=owner,
            )
        if not (period > 0 and math.isfinite(period)):
            raise ConfigurationError(
                f"{owner}: invalid rate {text!r}: the period must be positive", value=value,
                owner=owner,
            )
        rate = cls(count=count, period=period, text=text.strip())
        if period * 1_000_000 / count < 1 or rate.interval_us > 2**48:
            raise ConfigurationError(
                f"{owner}: invalid rate {text!r}: outside what a microsecond clock can pace "
                "(at most 1,000,000/s, at least one per 8 years)",
                value=value, owner=owner,
            )
        return rate

    @property
    def interval_us(self) -> int:
        """Microseconds between two admissions, rounded up so the pace never exceeds the rate."""
        return math.ceil(self.period * 1_000_000 / self.count)

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        return self.text


def parse_retry_after(value: object, *, now: float | None = None) -> float:
    """Seconds to wait, from an HTTP ``Retry-After`` value: delay-seconds (``"30"``, ``30``,
    ``2.5``) or an HTTP date (``"Wed, 21 Oct 2026 07:28:00 GMT"``, counted from ``now``, default
    this host's clock). A date in the past is 0.

    Raises:
        ConfigurationError: neither a number of seconds nor an HTTP date.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number or (isinstance(value, str) and _SECONDS.match(value)):
        seconds = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str) and value.strip():
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            when = None
        if when is None or when.tzinfo is None:
            raise ConfigurationError(
                f"Retry-After {value!r} is neither a number of seconds nor an HTTP date",
                value=value, owner="Retry-After")
        seconds = max(0.0, when.timestamp() - (time.time() if now is None else now))
    else:
        raise ConfigurationError(
            f"Retry-After {value!r} is neither a number of seconds nor an HTTP date",
            value=value, owner="Retry-After")
    if not (math.isfinite(seconds) and 0 <= seconds <= 366 * 86400):
        raise ConfigurationError(
            f"Retry-After {value!r}: expected 0 to 366 days", value=value, owner="Retry-After")
    return seconds


_SECONDS = re.compile(r"^\s*[0-9]+(?:\.[0-9]+)?\s*$")
