from __future__ import annotations

import pytest

from taskthrottle import ConfigurationError, Rate, Throttle


@pytest.mark.parametrize(
    ("text", "count", "period", "interval_us"),
    [
        ("10", 10.0, 1.0, 100_000),
        ("10/s", 10.0, 1.0, 100_000),
        ("10/m", 10.0, 60.0, 6_000_000),
        ("10/h", 10.0, 3600.0, 360_000_000),
        ("5/30s", 5.0, 30.0, 6_000_000),
        ("100/min", 100.0, 60.0, 600_000),
        ("1000/d", 1000.0, 86400.0, 86_400_000),
        ("0.5/s", 0.5, 1.0, 2_000_000),
        ("3/s", 3.0, 1.0, 333_334),  # rounded up: never faster than the rate
        (" 2 / 10 s ", 2.0, 10.0, 5_000_000),
        ("10/S", 10.0, 1.0, 100_000),
        (10, 10.0, 1.0, 100_000),
        (2.5, 2.5, 1.0, 400_000),
    ],
)
def test_grammar(text: object, count: float, period: float, interval_us: int) -> None:
    rate = Rate.parse(text)
    assert (rate.count, rate.period, rate.interval_us) == (count, period, interval_us)


@pytest.mark.parametrize(
    "bad", ["", "abc", "10/x", "-1/s", "0/s", "10/0s", "0", "10/", "/s", "1e3/s", "nan", "inf/s",
            "10/s/s", None, True, [10], -3, 0.0],
)
def test_bad_rate_names_owner_and_value(bad: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Throttle("vendor-x", bad)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert "throttle 'vendor-x'" in str(caught.value)
    assert repr(str(bad)) in str(caught.value) or repr(bad) in str(caught.value)
    assert caught.value.value == bad


@pytest.mark.parametrize("burst", [0, -1, 1.5, "2", True, None])
def test_bad_burst(burst: object) -> None:
    with pytest.raises(ConfigurationError, match=r"throttle 'v': invalid burst"):
        Throttle("v", "10/s", burst=burst)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a b", "{x}", "x}", "tab\there", "new\nline", "x" * 201, 7])
def test_bad_names(name: object) -> None:
    with pytest.raises(ConfigurationError, match="invalid throttle name"):
        Throttle(name, "10/s")  # type: ignore[arg-type]
