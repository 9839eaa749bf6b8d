"""The operator commands (``taskthrottle status|watch|set|unset|pause|resume|reset`` and
``celery throttle ...``) against the real Redis of the session: what they show is what the
throttles decide, and what they change changes the next decision."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import cli_app
import pytest
import redis
from celery.bin.celery import celery as celery_cli
from click.testing import CliRunner, Result

from taskthrottle import Outcome, Throttle, admin
from taskthrottle.cli import celery_throttle, main
from taskthrottle.throttle import Limit, encode_key

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def url(taskthrottle_url: str) -> Iterator[str]:
    """The store's URL, also given to the test app (its settings are forgotten after)."""
    cli_app.app.conf.taskthrottle_redis_url = taskthrottle_url
    yield taskthrottle_url
    cli_app.app.conf.taskthrottle_redis_url = None


def run(*args: str, url: str | None = None, ok: bool = True) -> Result:
    env = {"TASKTHROTTLE_REDIS_URL": url} if url else {"TASKTHROTTLE_REDIS_URL": ""}
    result = CliRunner().invoke(main, list(args), env=env)
    if ok:
        assert 0 == result.exit_code, result.output
    return result


def rows(*args: str, url: str | None = None) -> dict[str, Any]:
    """``status --json``, by throttle name."""
    out = run("status", "--json", *args, url=url).stdout
    return {row["name"]: row for row in json.loads(out)}


def left(row: dict[str, Any]) -> list[int | None]:
    return [limit["left"] for limit in row["bucket"]["limits"]]


# --- status -----------------------------------------------------------------------------------

def test_status_of_the_app_shows_what_is_left(r: redis.Redis, url: str) -> None:
    for _ in range(2):
        assert cli_app.vendor.acquire(redis=r).granted  # holds a lease each
    found = rows("-A", "cli_app:app")
    assert {"cli-app-vendor", "cli-app-tenants", "cli.settings.*"} == set(found)
    vendor = found["cli-app-vendor"]
    assert (True, False, ["10/s,burst=3", "5/m,exact"], 2) == (
        vendor["defined"], vendor["keyed"], vendor["limits"], vendor["concurrency"])
    assert [1, 3] == left(vendor)  # 3 - 2 tokens, 5 - 2 in the window
    assert [3, 5] == [limit["capacity"] for limit in vendor["bucket"]["limits"]]
    assert (2, 2) == (vendor["leases"], vendor["bucket"]["leases"])
    assert (None, 0.0, 0.0) == (vendor["override"], vendor["paused_until"],
                                vendor["bucket"]["next_free"])
    untouched = found["cli.settings.*"]  # from taskthrottle_throttles; nothing stored yet
    assert ([1], False) == (left(untouched), untouched["bucket"]["stored"])

    table = run("status", "-A", "cli_app:app").stdout
    line = next(line for line in table.splitlines() if line.startswith("cli-app-vendor"))
    assert "10/s,burst=3 5/m,exact" in line
    assert "1/3 3/5" in line
    assert "2/2" in line
    assert line.split()[-1] == "-"  # not keyed
    assert "NAME" in table
    assert "LEASES" in table


def test_an_empty_bucket_shows_when_it_frees_up(r: redis.Redis, url: str) -> None:
    t = Throttle("cli-empty", "1/h", burst=2)
    t.acquire(redis=r)
    t.acquire(redis=r)
    row = rows("cli-empty", url=url)["cli-empty"]
    assert [0] == left(row)
    assert 3590 < row["bucket"]["next_free"] <= 3600  # the next token
    assert "in 60 min" in run("status", "cli-empty", url=url).stdout


def test_a_full_window_shows_when_it_frees_up(r: redis.Redis, url: str) -> None:
    t = Throttle("cli-window", Limit("2/m", exact=True))
    first = t.acquire(redis=r)
    t.acquire(redis=r)
    # known from Redis only, a window's count is not: "?"
    assert [None] == left(rows("cli-window", url=url)["cli-window"])
    # known from code (here through the API the commands use), it is
    [status] = admin.status(r, {t.name: t}, [t.name])
    assert status.bucket is not None
    [window] = status.bucket.limits
    assert (0, 2, "2/m,exact") == (window.left, window.capacity, window.limit)
    # the first entry leaves the window one period (and the window's guard) after its slot
    assert first.slot is not None
    assert 59 < window.next_free <= (first.slot - first.now) / 1e6 + 60.1
    assert window.next_free == status.bucket.next_free


def test_a_throttle_seen_only_in_redis_shows_its_state(r: redis.Redis, url: str) -> None:
    t = Throttle("cli-redis-only", "10/s", burst=4)
    t.acquire(redis=r)
    row = rows(url=url)["cli-redis-only"]  # no app: found by SCAN
    assert (False, False, None) == (row["defined"], row["keyed"], row["limits"])
    assert [3] == left(row)
    assert "10/s,burst=4" == row["bucket"]["limits"][0]["limit"]  # from the stored bucket id
    assert "?" in run("status", url=url).stdout


def test_keyed_buckets_are_counted_and_listed(r: redis.Redis, url: str) -> None:
    cli_app.tenants.acquire(key="tenant-a", redis=r)
    cli_app.tenants.acquire(key="a tenant with spaces", redis=r)
    row = rows("-A", "cli_app:app", "cli-app-tenants")["cli-app-tenants"]
    assert (True, None, 2, 2, []) == (row["keyed"], row["bucket"], row["keys"], row["leases"],
                                      row["key_states"])
    row = rows("-A", "cli_app:app", "--keys", "cli-app-tenants")["cli-app-tenants"]
    by_id = {state["key_id"]: state for state in row["key_states"]}
    assert {"=tenant-a", encode_key("a tenant with spaces")} == set(by_id)
    plain = by_id["=tenant-a"]
    assert ("tenant-a", [0], 1) == (plain["key"], [x["left"] for x in plain["limits"]],
                                    plain["leases"])
    assert by_id[encode_key("a tenant with spaces")]["key"] is None  # stored as a hash
    table = run("status", "-A", "cli_app:app", "--keys", "cli-app-tenants").stdout
    assert "key tenant-a" in table
    assert "key #" in table


def test_names_select_throttles_and_are_not_globs(r: redis.Redis, url: str) -> None:
    Throttle("cli.settings.other", "1/s").acquire(redis=r)
    Throttle("cli.settings.*", "3/m").acquire(redis=r)
    assert ["cli.settings.*"] == list(rows("cli.settings.*", url=url))
    result = run("status", "cli-nothing-here", url=url)
    assert "no throttle 'cli-nothing-here'" in result.stderr


def test_another_prefix(r: redis.Redis, url: str) -> None:
    Throttle("cli-prefixed", "5/s", burst=5).acquire(redis=r, prefix="cli-other:")
    assert "cli-prefixed" not in rows(url=url)
    assert [4] == left(rows("--prefix", "cli-other:", url=url)["cli-prefixed"])


# --- set / unset ------------------------------------------------------------------------------

def test_set_overrides_the_next_decisions_and_unset_restores(r: redis.Redis, url: str) -> None:
    t = Throttle("cli-override", "100/s", burst=5)
    result = run("set", "cli-override", "1/h", "1000/d,exact", url=url)
    assert "cli-override: override 1/h 1000/d,exact stored" in result.stdout
    assert [Outcome.GRANTED, Outcome.DENIED] == [t.acquire(redis=r).outcome for _ in range(2)]
    row = rows("cli-override", url=url)["cli-override"]
    assert "1/h 1000/d,exact" == row["override"]["text"]
    assert Limit("1/h").spec + " " + Limit("1000/d", exact=True).spec == row["override"]["spec"]
    assert row["override"]["since"] > 0
    assert ["1/h", "1000/d,exact"] == [x["limit"] for x in row["bucket"]["limits"]]
    assert [0, 999] == left(row)

    assert "cli-override: override removed" in run("unset", "cli-override", url=url).stdout
    assert rows("cli-override", url=url)["cli-override"]["override"] is None
    assert [Outcome.GRANTED] * 5 == [t.acquire(redis=r).outcome for _ in range(5)]  # burst 5
    assert "no override was set" in run("unset", "cli-override", url=url).stdout


def test_set_json_and_the_cost_warning(url: str) -> None:
    result = run("set", "-A", "cli_app:app", "--json", "cli-app-vendor", "10/s", url=url)
    payload = json.loads(result.stdout)
    assert ("cli-app-vendor", "10/s", ["10/s,burst=3", "5/m,exact"]) == (
        payload["name"], payload["override"]["text"], payload["limits"])
    assert "grants at most 1 at once" in result.stderr  # the code allows 3 at once


@pytest.mark.parametrize("bad", ["10/x", "0/s", "10/s,burst=0", "5/s,bogus"])
def test_set_rejects_bad_limit_text(r: redis.Redis, url: str, bad: str) -> None:
    result = run("set", "cli-bad", "1/s", bad, url=url, ok=False)
    assert 2 == result.exit_code
    assert bad in result.output
    assert "LIMIT" in result.output
    assert [] == r.keys()


def test_set_of_a_name_nothing_knows_warns_but_stores(r: redis.Redis, url: str) -> None:
    result = run("set", "cli-not-yet", "2/s", url=url)
    assert "no throttle 'cli-not-yet'" in result.stderr
    assert b"2/s" == r.hget("taskthrottle:{cli-not-yet}:o", "text")


def test_a_bad_name_is_refused(url: str) -> None:
    result = run("set", "has space", "1/s", url=url, ok=False)
    assert 2 == result.exit_code
    assert "invalid throttle name" in result.output


# --- pause / resume ---------------------------------------------------------------------------

def test_pause_and_resume(r: redis.Redis, url: str) -> None:
    t = Throttle("cli-pause", "1/s", burst=10)  # its state outlives the CLI's start-up
    assert t.acquire(redis=r).granted
    assert "cli-pause: paused for 30 s" in run("pause", "cli-pause", "30", url=url).stdout
    row = rows("cli-pause", url=url)["cli-pause"]
    assert 29 < row["paused_until"] <= 30
    assert 29 < row["bucket"]["paused_until"] <= 30
    assert 29 < row["bucket"]["next_free"] <= 30
    decision = t.acquire(redis=r)
    assert (Outcome.DENIED, True) == (decision.outcome, decision.paused_until > 0)
    assert "for 30 s" in run("status", "cli-pause", url=url).stdout

    assert "cli-pause: resumed" in run("resume", "cli-pause", url=url).stdout
    assert 0 == rows("cli-pause", url=url)["cli-pause"]["paused_until"]
    assert t.acquire(redis=r).granted


def test_pause_of_a_keyed_throttle_whole_or_one_key(r: redis.Redis, url: str) -> None:
    t = Throttle("cli-pause-keys", "1/s", burst=10, key="{0}")  # states outlive the CLI
    payload = json.loads(run("pause", "--json", "cli-pause-keys", "60", "--key", "acme",
                             url=url).stdout)
    assert ("acme", True) == (payload["key"], 59 < payload["paused_until"] <= 60)
    assert Outcome.DENIED == t.acquire(key="acme", redis=r).outcome
    assert t.acquire(key="other", redis=r).granted
    run("pause", "cli-pause-keys", "20", url=url)  # every key: the control hash
    row = rows("--keys", "cli-pause-keys", url=url)["cli-pause-keys"]
    assert 19 < row["paused_until"] <= 20
    assert {"acme": 60, "other": 20} == {
        s["key"]: round(s["paused_until"]) for s in row["key_states"]}
    result = run("resume", "cli-pause-keys", url=url)
    assert "1 key is still paused on their own: resume each with --key (acme)" in result.stderr
    assert t.acquire(key="other", redis=r).granted
    run("resume", "cli-pause-keys", "--key", "acme", url=url)
    assert t.acquire(key="acme", redis=r).granted


def test_a_key_for_an_unkeyed_throttle_is_an_error(url: str) -> None:
    result = run("pause", "-A", "cli_app:app", "cli-app-vendor", "5", "--key", "x", url=url,
                 ok=False)
    assert 2 == result.exit_code
    assert "unkeyed throttle takes no key" in result.output


# --- reset ------------------------------------------------------------------------------------

def test_reset_deletes_state_windows_and_leases_keeps_the_override(r: redis.Redis,
                                                                    url: str) -> None:
    t = Throttle("cli-reset", Limit("10/s", burst=2), Limit("3/m", exact=True), concurrency=5)
    t.acquire(redis=r)
    run("set", "cli-reset", "10/s,burst=2", "3/m,exact", url=url)
    t.acquire(redis=r)
    before = {k.decode() for k in r.keys("*")}
    assert 4 == len(before)  # state, window, leases, control hash
    result = run("reset", "cli-reset", url=url)
    assert "cli-reset: deleted 3 Redis keys (1 leases, 1 state, 1 window)" in result.stdout
    assert [t.control_key().encode()] == r.keys()
    assert t.acquire(redis=r).granted  # as if nothing had been taken before
    assert [1, 2] == left(rows("cli-reset", url=url)["cli-reset"])
    payload = json.loads(run("reset", "--all", "--json", "cli-reset", url=url).stdout)
    assert (4, True) == (payload["deleted"], t.control_key() in payload["keys"])
    assert [] == r.keys()


def test_reset_of_one_key_or_every_key(r: redis.Redis, url: str) -> None:
    t = Throttle("cli-reset-keys", "1/h", key="{0}", concurrency=2)
    for key in ("a", "b", "a long key"):
        t.acquire(key=key, redis=r)
    other = Throttle("cli-reset-keys-2", "1/h", key="{0}")  # a name that starts the same
    other.acquire(key="a", redis=r)
    run("reset", "cli-reset-keys", "--key", "a", url=url)
    assert {t.redis_key("b"), t.redis_key("b") + ":c", t.redis_key("a long key"),
            t.redis_key("a long key") + ":c", other.redis_key("a")} == {
        k.decode() for k in r.keys("*")}
    assert t.acquire(key="a", redis=r).granted
    result = run("reset", "cli-reset-keys", url=url)
    assert "deleted 6 Redis keys" in result.stdout
    assert [other.redis_key("a").encode()] == r.keys()


def test_reset_refuses_all_with_a_key(url: str) -> None:
    result = run("reset", "cli-x", "--key", "a", "--all", url=url, ok=False)
    assert 2 == result.exit_code


# --- watch ------------------------------------------------------------------------------------

def test_watch_draws_frames(r: redis.Redis, url: str) -> None:
    Throttle("cli-watch", "5/s").acquire(redis=r)
    out = run("watch", "cli-watch", "--count", "3", "--interval", "0.05", url=url).stdout
    assert 3 == out.count("NAME  ")
    lines = run("watch", "--json", "--count", "2", "--interval", "0.05", url=url).stdout
    frames = [json.loads(line) for line in lines.splitlines()]
    assert [["cli-watch"], ["cli-watch"]] == [[row["name"] for row in f] for f in frames]


# --- the store: where, and never its password -------------------------------------------------

def test_no_store_is_a_usage_error() -> None:
    result = run("status", ok=False)
    assert 2 == result.exit_code
    assert "TASKTHROTTLE_REDIS_URL" in result.output


def test_passwords_are_never_printed(r: redis.Redis, taskthrottle_url: str) -> None:
    host = taskthrottle_url.split("://", 1)[1]
    r.acl_setuser("cli-user", enabled=True, passwords=["+s3cret-pw"], commands=["+@all"],
                  keys=["*"], channels=["*"])
    try:
        good = run("status", "--redis-url", f"redis://cli-user:s3cret-pw@{host}")
        assert "redis://cli-user:***@" in good.output
        wrong = run("status", "--redis-url", f"redis://cli-user:wrong-pw@{host}", ok=False)
        assert 1 == wrong.exit_code
        assert "wrong-pw" not in wrong.output
        assert "cli-user:***@" in wrong.output
        query = run("status", "--redis-url",
                    f"redis://{host}?username=cli-user&password=qu3ry-pw", ok=False)
        assert "qu3ry-pw" not in query.output
        down = run("status", "--redis-url", "redis://:d0wn-pw@127.0.0.1:1/0", ok=False)
        assert (1, False) == (down.exit_code, "d0wn-pw" in down.output)
    finally:
        r.acl_deluser("cli-user")


# --- celery throttle --------------------------------------------------------------------------

def test_the_celery_plugin_is_declared_and_installed() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '[project.entry-points."celery.commands"]\n' \
           'throttle = "taskthrottle.cli:celery_throttle"' in pyproject
    found = entry_points(group="celery.commands", name="throttle")
    assert found, "the installed metadata is stale: pip install -e ."
    assert celery_throttle is next(iter(found)).load()
    assert celery_throttle is celery_cli.commands["throttle"]


def test_celery_throttle_uses_the_app_of_celery_a(r: redis.Redis, url: str) -> None:
    cli_app.vendor.acquire(redis=r)
    result = CliRunner().invoke(
        celery_cli, ["-A", "cli_app:app", "throttle", "status", "--json"],
        env={"TASKTHROTTLE_REDIS_URL": ""})
    assert 0 == result.exit_code, result.output
    found = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"cli-app-vendor", "cli-app-tenants", "cli.settings.*"} == set(found)
    assert ([2, 4], True) == (left(found["cli-app-vendor"]), found["cli-app-vendor"]["defined"])

    result = CliRunner().invoke(celery_cli, ["-A", "cli_app:app", "throttle", "set",
                                             "cli-app-vendor", "1/h"])
    assert 0 == result.exit_code, result.output
    assert b"1/h" == r.hget(cli_app.vendor.control_key(), "text")


def test_celery_throttle_without_a_shows_redis_only(r: redis.Redis, url: str) -> None:
    cli_app.vendor.acquire(redis=r)
    result = CliRunner().invoke(celery_cli, ["throttle", "status", "--json"],
                                env={"TASKTHROTTLE_REDIS_URL": url})
    assert 0 == result.exit_code, result.output
    assert [("cli-app-vendor", False)] == [(row["name"], row["defined"])
                                           for row in json.loads(result.stdout)]
