"""ThrottledTask in-process: definition-time errors, settings validation, eager mode."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import redis
from celery import Celery

from taskthrottle import (
    BackendError,
    ConfigurationError,
    Limit,
    Outcome,
    Throttle,
    ThrottledTask,
    config,
)
from taskthrottle._procs import RedisServer


def make_app(**conf: Any) -> Celery:
    app = Celery("t", broker="memory://", set_as_current=False)
    app.conf.update(conf)
    return app


def define(app: Celery, **opts: Any) -> Any:
    """Define a throttled task now (``lazy=False``), as a module would at import."""

    def body() -> int:
        return 7

    return app.task(base=ThrottledTask, lazy=False, shared=False, **opts)(body)


BAD_RATES = ["", "abc", "10/x", "-1/s", "0/s", "10/0s"]


@pytest.mark.parametrize("bad", BAD_RATES)
def test_bad_limit_string_fails_when_the_task_is_defined(bad: str) -> None:
    app = make_app()
    app.finalize()  # a finalized app creates the task class at the decorator
    with pytest.raises(ConfigurationError) as caught:
        @app.task(base=ThrottledTask, throttle=bad, name="shop.sync_customer", shared=False)
        def sync_customer(customer_id: int) -> None: ...
    assert "task 'shop.sync_customer'" in str(caught.value)
    assert repr(bad) in str(caught.value)


def test_lazy_app_fails_at_finalize_naming_the_task() -> None:
    app = make_app()

    @app.task(base=ThrottledTask, throttle="10/x", name="shop.push", shared=False)
    def push(order_id: int) -> None: ...

    with pytest.raises(ConfigurationError, match=r"task 'shop.push'.*'10/x'"):
        app.finalize()


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_burst_fails_at_throttle_definition(bad: int) -> None:
    with pytest.raises(ConfigurationError, match=r"throttle 'vendor-x': invalid burst"):
        Throttle("vendor-x", "10/s", burst=bad)


@pytest.mark.parametrize("bad", [True, object(), ["10/s"]])
def test_throttle_of_the_wrong_type(bad: object) -> None:
    app = make_app()
    with pytest.raises(ConfigurationError, match=r"task 'x\.y': throttle must be"):
        define(app, throttle=bad, name="x.y")


def test_cost_above_the_burst_fails_at_definition() -> None:
    app = make_app()
    vendor = Throttle("vendor-batch", "10/s", burst=2)
    with pytest.raises(ConfigurationError, match="throttle_cost 3"):
        define(app, throttle=vendor, throttle_cost=3, name="x.batch")


def test_a_string_makes_a_throttle_named_after_the_task() -> None:
    app = make_app()
    task = define(app, throttle="5/s", name="shop.sync")
    assert isinstance(task.throttle, Throttle)
    assert (task.throttle.name, task.throttle.rate.interval_us,
                                         task.throttle.burst) == ("shop.sync", 200_000, 1)


def test_a_number_is_a_rate_per_second_as_in_celery() -> None:
    task = define(make_app(), throttle=4, name="shop.numeric")
    assert ("shop.numeric", 250_000) == (task.throttle.name, task.throttle.rate.interval_us)


def test_tasks_share_one_throttle_object() -> None:
    app = make_app()
    vendor = Throttle("vendor-x", "10/s")
    a = define(app, throttle=vendor, name="a")
    b = define(app, throttle=vendor, name="b")
    assert a.throttle is b.throttle is vendor


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"broker_url": "amqp://guest@localhost//"}, "taskthrottle_redis_url is not set"),
        ({"taskthrottle_redis_url": "http://x"}, "expected a redis://"),
        ({"taskthrottle_redis_url": "redis://h", "taskthrottle_max_delay": 0}, "max_delay"),
        ({"taskthrottle_redis_url": "redis://h", "taskthrottle_max_delay": "5"}, "max_delay"),
        ({"broker_url": "redis://h", "taskthrottle_max_delay": 3600}, "visibility_timeout"),
        ({"broker_url": "redis://h", "broker_transport_options": {"visibility_timeout": 60},
          "taskthrottle_max_delay": 90}, "visibility_timeout"),
        ({"taskthrottle_redis_url": "redis://h", "taskthrottle_max_inline_wait": -1},
         "max_inline_wait"),
        ({"taskthrottle_redis_url": "redis://h", "taskthrottle_prefix": "{x}"}, "prefix"),
    ],
)
def test_bad_settings(conf: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        config.load(make_app(**conf))


def test_default_store_is_the_redis_broker() -> None:
    settings = config.load(make_app(broker_url="redis://h:1/3"))
    expected = ("redis://h:1/3", "taskthrottle:", 300.0)
    assert expected == (settings.redis_url, settings.prefix, settings.max_delay)


def test_eager_mode_waits_for_its_token_without_recursing(r: redis.Redis,
                                                          taskthrottle_url: str) -> None:
    app = make_app(task_always_eager=True, taskthrottle_redis_url=taskthrottle_url)
    vendor = Throttle("eager", "20/s")

    @app.task(base=ThrottledTask, throttle=vendor, bind=True, lazy=False, shared=False)
    def double(self: Any, x: int) -> tuple[int, int]:
        return x * 2, self.request.retries

    def redis_now() -> int:
        seconds, micros = r.time()
        return int(seconds) * 1_000_000 + int(micros)

    before = redis_now()
    results = [double.delay(i).get() for i in range(3)] + [double.apply((3,)).get()]
    after = redis_now()
    assert [(0, 0), (2, 0), (4, 0), (6, 0)] == results
    # four tokens at 50 ms each went through the shared bucket, the calls waiting for them:
    # the schedule ends four intervals after the first start, one after the last
    tat = int(r.get(vendor.redis_key()).split()[3])  # type: ignore[union-attr]
    assert tat - before >= 200_000
    assert 0 < tat - after <= 50_000


def test_unthrottled_when_no_throttle_is_set(taskthrottle_url: str) -> None:
    app = make_app(task_always_eager=True, taskthrottle_redis_url=taskthrottle_url)
    plain = define(app, name="plain")
    assert 7 == plain.delay().get()


def test_exceptions_survive_pickling() -> None:
    backend = pickle.loads(pickle.dumps(BackendError("down", throttle="vendor-x")))
    config_error = pickle.loads(pickle.dumps(ConfigurationError("bad", value=3, owner="o")))
    assert ("down", "vendor-x") == (str(backend), backend.throttle)
    assert ("bad", 3, "o") == (str(config_error), config_error.value, config_error.owner)


def test_eager_run_with_redis_down_raises_backend_error() -> None:
    dead = RedisServer()  # never started: connection refused
    app = make_app(task_always_eager=True, taskthrottle_redis_url=dead.url(0),
                   taskthrottle_socket_timeout=0.5)
    task = define(app, throttle=Throttle("eager-down", "1/s"), name="eager.down")
    with pytest.raises(BackendError) as caught:
        task.delay().get()
    assert "eager-down" == caught.value.throttle


def test_one_name_cannot_hold_two_limits() -> None:
    keep = Throttle("twice", "1/s")
    assert "twice" == Throttle("twice", "1/s").name  # the same limit again is the same bucket
    with pytest.raises(ConfigurationError, match=r"throttle 'twice' is already defined as "
                                                 r"Throttle\('twice', '1/s'\).*cannot also be "
                                                 r"Throttle\('twice', '10/s,burst=10'\)"):
        Throttle("twice", "10/s", burst=10)
    app = make_app()
    with pytest.raises(ConfigurationError, match="already defined"):
        define(app, throttle="100/s", name="twice")
    assert keep


@pytest.mark.parametrize(("rate", "burst"), [("1/10000d", 20000), ("2000000/s", 1),
                                             ("\u0661\u0660/s", 1)])
def test_limits_a_microsecond_clock_cannot_pace(rate: str, burst: int) -> None:
    with pytest.raises(ConfigurationError, match=r"invalid rate|8 years"):
        Throttle("pace", rate, burst=burst)


def test_inline_waits_stay_well_inside_time_limits(taskthrottle_url: str) -> None:
    app = make_app(taskthrottle_redis_url=taskthrottle_url, taskthrottle_max_inline_wait=1.0)
    limited = define(app, throttle="2/s", name="limited", soft_time_limit=0.5)
    free = define(app, throttle="2/s", name="free")
    settings = config.load(app)
    assert (0.05, 1.0) == (limited._max_inline_wait(settings), free._max_inline_wait(settings))


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://127.0.0.1:abc/0", "redis://127.0.0.1:abc/0"),
    ("redis://user:s3cret@127.0.0.1:abc/0", "redis://user:***@127.0.0.1:abc/0"),
    ("redis://user:s3cret@127.0.0.1:6379/0?foo=bar", "unexpected keyword argument 'foo'"),
    ("redis://127.0.0.1:6379/abc", "the db 'abc' is not a number"),
])
def test_a_bad_store_url_is_a_configuration_error_without_its_password(url: str,
                                                                      shown: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        config.load(make_app(taskthrottle_redis_url=url))
    assert shown in str(caught.value)
    assert "s3cret" not in str(caught.value)


# --- throttles by task name (tasks you don't own), several throttles, cost -----------------

def test_settings_throttle_tasks_by_name_and_glob(r: redis.Redis, taskthrottle_url: str) -> None:
    app = make_app(task_always_eager=True, taskthrottle_redis_url=taskthrottle_url,
                   taskthrottle_throttles={
                       "vendor.sync": "1/h",
                       "vendor.*": {"limits": ["100/s", "20/10s,exact"], "name": "vendor-x"},
                   })
    sync, other, mine = (define(app, name=name) for name in ("vendor.sync", "vendor.push",
                                                              "mine.task"))
    settings = config.load(app)
    assert ("vendor.sync",) == tuple(t.name for t in sync.throttles(settings))
    (x,) = other.throttles(settings)
    assert ("vendor-x", "b10000:1 w10050000:20") == (x.name, x.spec)
    assert () == mine.throttles(settings)
    assert 7 == other.delay().get()  # through the shared bucket: its window has the entry
    assert 1 == r.zcard(x.redis_key() + ":w10050000")
    assert 7 == mine.delay().get()


@pytest.mark.parametrize(("value", "message"), [
    ({"vendor.*": "10/x"}, r"taskthrottle_throttles\['vendor\.\*'\].*invalid rate '10/x'"),
    ({"vendor.*": {"limits": "1/s", "speed": 3}}, r"taskthrottle_throttles\['vendor\.\*'\]"),
    (["vendor.*"], "expected a dict"),
])
def test_bad_throttles_setting_names_the_pattern(value: Any, message: str) -> None:
    app = make_app(taskthrottle_redis_url="redis://h:1/0", taskthrottle_throttles=value)
    with pytest.raises(ConfigurationError, match=message):
        config.load(app)


def test_a_list_of_throttles_and_a_cost_above_any_of_them() -> None:
    app = make_app()
    a, b = Throttle("list-a", "10/s", burst=5), Throttle("list-b", "1/s", burst=2)
    task = define(app, name="listed", throttle=[a, b])
    assert (a, b) == task.throttles()
    with pytest.raises(ConfigurationError, match=r"throttle_cost 3 must be an integer from 1 to 2"):
        define(app, name="listed-costly", throttle=[a, b], throttle_cost=3)
    with pytest.raises(ConfigurationError, match="listed twice"):
        define(app, name="listed-twice", throttle=[a, a])


def test_a_cost_from_the_arguments_is_checked_when_called(taskthrottle_url: str) -> None:
    app = make_app(task_always_eager=True, taskthrottle_redis_url=taskthrottle_url)
    batch = Throttle("batch-cost", "1000/s", burst=50)

    @app.task(base=ThrottledTask, throttle=batch, throttle_cost=lambda items: len(items),
              lazy=False, shared=False, name="batch")
    def send(items: list[int]) -> int:
        return len(items)

    assert 50 == send.delay(list(range(50))).get()
    with pytest.raises(ConfigurationError, match="cost 51 must be an integer from 1 to 50"):
        send.delay(list(range(51))).get()


def test_failure_policy_is_validated_and_allow_runs_eagerly_unthrottled() -> None:
    with pytest.raises(ConfigurationError, match="invalid on_error 'ignore'"):
        Throttle("policy-bad", "1/s", on_error="ignore")
    app = make_app(taskthrottle_redis_url="redis://h:1/0", taskthrottle_on_backend_error="x")
    with pytest.raises(ConfigurationError, match="taskthrottle_on_backend_error"):
        config.load(app)
    from taskthrottle.signals import unthrottled

    dead = RedisServer()  # never started
    app = make_app(task_always_eager=True, taskthrottle_redis_url=dead.url(0),
                   taskthrottle_socket_timeout=0.2)
    allowed = define(app, name="policy-allow", throttle=Throttle("policy-allow", "1/s",
                                                                on_error="allow"))
    refused = define(app, name="policy-raise", throttle=Throttle("policy-raise", "1/s"))
    before = unthrottled["policy-allow"]
    assert 7 == allowed.delay().get()
    assert before + 1 == unthrottled["policy-allow"]
    with pytest.raises(BackendError):
        refused.delay().get()


def test_max_delay_must_stay_below_rabbitmqs_consumer_timeout() -> None:
    amqp = {"broker_url": "amqp://guest@h//", "taskthrottle_redis_url": "redis://h:1/0"}
    assert 300.0 == config.load(make_app(**amqp)).max_delay
    with pytest.raises(ConfigurationError, match="consumer timeout"):
        config.load(make_app(**amqp, taskthrottle_max_delay=2000))
    with pytest.raises(ConfigurationError, match="consumer timeout"):
        config.load(make_app(**amqp, taskthrottle_broker_consumer_timeout=200))


@pytest.mark.parametrize("limits", [None, b"5/s", {"x": 1}])
def test_throttles_setting_with_limits_of_the_wrong_type(limits: object) -> None:
    app = make_app(taskthrottle_redis_url="redis://h:1/0",
                   taskthrottle_throttles={"t.*": {"limits": limits}})
    with pytest.raises(ConfigurationError, match=r"taskthrottle_throttles\['t\.\*'\]"):
        config.load(app)


def test_a_key_template_sees_arguments_by_name_however_they_are_passed(
        r: redis.Redis, taskthrottle_url: str) -> None:
    app = make_app(task_always_eager=True, taskthrottle_redis_url=taskthrottle_url)
    per_tenant = Throttle("by-name", "1/h", key="{tenant}")

    @app.task(base=ThrottledTask, throttle=per_tenant, lazy=False, shared=False, name="by-name")
    def push(items: list[int], tenant: str) -> str:
        return tenant

    assert "acme" == push.delay([1], "acme").get()  # positionally
    assert "bolt" == push.delay([1], tenant="bolt").get()  # by keyword
    assert {per_tenant.redis_key("acme"), per_tenant.redis_key("bolt")} == {
        k.decode() for k in r.scan_iter("*")}


def test_peek_takes_nothing_and_says_the_wait(r: redis.Redis) -> None:
    t = Throttle("peeked", "1/h", Limit("5/h", exact=True), concurrency=1)
    assert t.acquire(redis=r, lease="a").granted
    before = sorted((k, r.dump(k)) for k in r.scan_iter("*"))
    assert Outcome.BUSY == t.acquire(redis=r, lease="b", peek=True).outcome
    t.release("a", redis=r)
    before = sorted((k, r.dump(k)) for k in r.scan_iter("*"))
    peek = t.acquire(redis=r, lease="b", peek=True, reserve=True, max_inline_wait=1)
    assert (Outcome.DENIED, True) == (peek.outcome, 3599 < peek.wait <= 3600)
    assert before == sorted((k, r.dump(k)) for k in r.scan_iter("*"))


def test_a_task_calling_itself_directly_keeps_its_slot(r: redis.Redis,
                                                       taskthrottle_url: str) -> None:
    app = make_app(task_always_eager=True, taskthrottle_redis_url=taskthrottle_url)
    cap = Throttle("self-call", concurrency=1, lease=30)

    @app.task(base=ThrottledTask, throttle=cap, bind=True, lazy=False, shared=False)
    def walk(self: Any, depth: int) -> list[int]:
        inner = walk(depth - 1) if depth else []  # a plain call: no admission, no release
        return [*inner, int(r.zcard(cap.redis_key() + ":c"))]

    assert [1, 1, 1] == walk.delay(2).get()  # the slot is held all through the outer run
    assert 0 == r.zcard(cap.redis_key() + ":c")  # and given back at its end


def test_an_eager_admission_that_fails_gives_back_the_slots_it_took(
        r: redis.Redis, taskthrottle_url: str) -> None:
    app = make_app(task_always_eager=True, taskthrottle_redis_url=taskthrottle_url)
    cap = Throttle("eager-cap", concurrency=1, lease=30)
    vendor = Throttle("eager-vendor", "10/s", burst=5)

    @app.task(base=ThrottledTask, throttle=[cap, vendor], throttle_cost=3, lazy=False,
              shared=False)
    def push() -> int:
        return 1

    r.hset(vendor.control_key(), "spec", "b1000000:1")  # an override: cost 3 can never pass
    with pytest.raises(ConfigurationError, match="exceeds"):
        push.delay().get()
    assert 0 == r.zcard(cap.redis_key() + ":c")  # the cap's slot, taken first, went back
    r.hdel(vendor.control_key(), "spec")
    assert 1 == push.delay().get()  # so the next call is not blocked by it
