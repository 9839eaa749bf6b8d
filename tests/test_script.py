"""Contract tests of lua/acquire.lua through Throttle.acquire, against the real redis-server."""

from __future__ import annotations

import time

import pytest
import redis

from taskthrottle import BackendError, ConfigurationError, Outcome, Throttle
from taskthrottle._procs import RedisServer


def state(r: redis.Redis, throttle: Throttle) -> dict[str, int]:
    """The stored schedule (tat) and start gate (sat), microseconds on the Redis clock."""
    _version, _pause, _id, tat, sat = r.get(throttle.redis_key()).split()  # type: ignore[union-attr]
    return {"tat": int(tat), "sat": int(sat)}


def test_burst_then_denied_with_the_wait_to_the_next_token(r: redis.Redis) -> None:
    hourly = Throttle("hourly", "1/h", burst=3)
    outcomes = [hourly.acquire(redis=r).outcome for _ in range(3)]
    denied = hourly.acquire(redis=r)
    assert [Outcome.GRANTED] * 3 == outcomes
    assert Outcome.DENIED == denied.outcome
    assert 3599.0 < denied.wait <= 3600.0
    assert denied.slot is None


def test_a_denied_decision_writes_nothing(r: redis.Redis) -> None:
    hourly = Throttle("hourly", "1/h")
    hourly.acquire(redis=r)
    before = state(r, hourly)
    for _ in range(5):
        assert Outcome.DENIED == hourly.acquire(redis=r).outcome
    assert before == state(r, hourly)


def test_refill_after_the_interval(r: redis.Redis) -> None:
    fast = Throttle("fast", "20/s")  # one token every 50 ms
    first = fast.acquire(redis=r)
    second = fast.acquire(redis=r)
    assert (first.outcome, second.outcome) == (Outcome.GRANTED, Outcome.DENIED)
    time.sleep(second.wait + 0.01)
    assert Outcome.GRANTED == fast.acquire(redis=r).outcome


def test_reservations_take_consecutive_slots(r: redis.Redis) -> None:
    t = Throttle("slots", "10/s")
    first = t.acquire(redis=r, reserve=True)
    reserved = [t.acquire(redis=r, reserve=True) for _ in range(3)]
    assert Outcome.GRANTED == first.outcome
    assert [Outcome.RESERVED] * 3 == [d.outcome for d in reserved]
    assert [100_000, 200_000, 300_000] == [d.slot - first.now for d in reserved]  # type: ignore[operator]
    for d in reserved:
        assert d.wait == pytest.approx((d.slot - d.now) / 1e6)  # type: ignore[operator]


def test_a_reservation_is_claimed_without_a_second_token(r: redis.Redis) -> None:
    t = Throttle("claim", "10/s")
    t.acquire(redis=r, reserve=True)
    held = t.acquire(redis=r, reserve=True)
    tat_before = state(r, t)["tat"]
    early = t.acquire(redis=r, reservation=held.slot)
    assert (Outcome.RESERVED, held.slot) == (early.outcome, early.slot)
    time.sleep(held.wait + 0.005)
    claimed = t.acquire(redis=r, reservation=held.slot)
    assert Outcome.GRANTED == claimed.outcome
    assert tat_before == state(r, t)["tat"]  # the schedule did not move: no second token


def test_a_claim_further_ahead_than_max_delay_is_not_a_reservation(r: redis.Redis) -> None:
    t = Throttle("forged", "10/s")
    now = t.acquire(redis=r).now
    d = t.acquire(redis=r, reserve=True, reservation=now + 10 * 86_400_000_000, max_delay=60)
    assert Outcome.RESERVED == d.outcome
    assert 0.09 < d.wait <= 0.1  # a fresh slot, not ten days away


def test_beyond_max_delay_nothing_is_reserved(r: redis.Redis) -> None:
    t = Throttle("far", "1/m")
    t.acquire(redis=r, reserve=True)
    before = state(r, t)
    far = t.acquire(redis=r, reserve=True, max_delay=10)
    assert Outcome.DENIED == far.outcome
    assert 59.0 < far.wait <= 60.0
    assert before == state(r, t)


def test_a_short_wait_is_granted_inline(r: redis.Redis) -> None:
    t = Throttle("inline", "10/s")
    t.acquire(redis=r)
    d = t.acquire(redis=r, reserve=True, max_inline_wait=0.25)
    assert Outcome.GRANTED == d.outcome
    assert 0.09 < d.wait <= 0.1


def test_late_reservations_do_not_start_bunched(r: redis.Redis) -> None:
    """Three reservations claimed together after their slots passed (a stalled worker): the
    start gate admits one; the others are bumped to fresh slots, one interval apart."""
    t = Throttle("gate", "10/s")
    t.acquire(redis=r)
    held = [t.acquire(redis=r, reserve=True) for _ in range(3)]
    time.sleep(0.5)
    claims = [t.acquire(redis=r, reserve=True, reservation=d.slot) for d in held]
    assert [Outcome.GRANTED, Outcome.RESERVED, Outcome.RESERVED] == [c.outcome for c in claims]
    first = claims[0].now
    assert [first + 100_000, first + 200_000] == [c.slot for c in claims[1:]]


def test_a_late_claim_that_holds_nobody_back_starts(r: redis.Redis) -> None:
    """A busy pool delivers a reserved task late; with no one due after it, it just starts."""
    t = Throttle("late", "10/s")
    t.acquire(redis=r)
    held = t.acquire(redis=r, reserve=True)
    time.sleep(held.wait + 0.3)
    assert Outcome.GRANTED == t.acquire(redis=r, reservation=held.slot).outcome


def test_a_bumped_claim_beyond_max_delay_gives_its_slot_up(r: redis.Redis) -> None:
    t = Throttle("bump", "1/m", burst=1)
    first = t.acquire(redis=r, reserve=True)
    assert first.granted
    # a slot from the past, claimed while the gate is a minute ahead
    bumped = t.acquire(redis=r, reserve=True, reservation=first.now - 1_000_000, max_delay=10)
    assert (Outcome.DENIED, None) == (bumped.outcome, bumped.slot)
    assert 59.0 < bumped.wait <= 60.0


def test_wait_blocks_until_granted_through_the_shared_bucket(r: redis.Redis) -> None:
    t = Throttle("blocking", "20/s")
    seconds, micros = r.time()
    before = seconds * 1_000_000 + micros
    waited = [t.wait(redis=r) for _ in range(4)]
    seconds, micros = r.time()
    after = seconds * 1_000_000 + micros
    assert 0.0 == waited[0]
    # The fourth start is 3 intervals of 50 ms after the first on the Redis clock, and wait()
    # returns no earlier (what it sleeps shrinks by however long the caller took between
    # calls, so the sum of the waits alone bounds nothing).
    assert 150_000 <= after - before < 1_000_000


def test_every_write_expires_when_the_bucket_is_full_again(r: redis.Redis) -> None:
    t = Throttle("ttl", "10/s", burst=2)
    t.acquire(redis=r)
    assert 0 < r.pttl(t.redis_key()) <= 101
    for _ in range(5):
        t.acquire(redis=r, reserve=True)
    # six tokens taken at 10/s: the bucket is full again 600 ms later, and not before
    assert 590 < r.pttl(t.redis_key()) <= 601
    time.sleep(0.65)
    assert 0 == r.exists(t.redis_key())


def test_the_key_is_under_the_prefix_with_the_name_as_hash_tag(r: redis.Redis) -> None:
    t = Throttle("vendor-x", "10/s")
    t.acquire(redis=r, prefix="myapp:tt:")
    assert [b"myapp:tt:{vendor-x}"] == r.keys("*")


def test_script_flush_is_invisible(r: redis.Redis) -> None:
    t = Throttle("flush", "1/h", burst=2)
    assert t.acquire(redis=r).granted
    r.script_flush()
    assert t.acquire(redis=r).granted
    assert Outcome.DENIED == t.acquire(redis=r).outcome


@pytest.mark.parametrize("cost", [0, 3, -1, 1.5, True])
def test_cost_must_fit_the_burst(r: redis.Redis, cost: object) -> None:
    with pytest.raises(ConfigurationError, match="cost"):
        Throttle("c", "1/s", burst=2).acquire(cost, redis=r)  # type: ignore[arg-type]


def test_cost_takes_that_many_tokens(r: redis.Redis) -> None:
    t = Throttle("cost", "1/h", burst=5)
    assert t.acquire(3, redis=r).granted
    assert t.acquire(2, redis=r).granted
    assert Outcome.DENIED == t.acquire(1, redis=r).outcome


@pytest.mark.parametrize(("option", "value"), [("max_delay", -1), ("max_delay", float("nan")),
                                               ("max_inline_wait", "1"), ("max_delay", True)])
def test_bad_acquire_options(r: redis.Redis, option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        Throttle("o", "1/s").acquire(redis=r, **{option: value})  # type: ignore[arg-type]


def test_no_client_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no Redis client"):
        Throttle("n", "1/s").acquire()


def test_redis_down_is_a_backend_error() -> None:
    with RedisServer() as down:
        client = down.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        t = Throttle("down", "1/s", redis=client)
        assert t.acquire().granted
        down.stop()
        with pytest.raises(BackendError) as caught:
            t.acquire()
    assert "down" == caught.value.throttle
