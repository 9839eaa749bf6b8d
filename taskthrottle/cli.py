"""The ``taskthrottle`` command line; it presents, never decides."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import click
import redis
from redis.exceptions import RedisClusterException

from . import __version__, admin, store
from .exceptions import ConfigurationError
from .rate import Rate
from .throttle import DEFAULT_PREFIX, Limit, Throttle, redis_errors, validate_name


@click.group()
@click.version_option(__version__, prog_name="taskthrottle")
def main() -> None:
    """taskthrottle: one shared rate limit for a whole Celery fleet."""


@main.command()
@click.option("--workers", default=3, show_default=True, type=click.IntRange(0, 32),
              help="celery worker processes to start, each with its own hostname; 0: use "
                   "workers already consuming the 'taskthrottle-demo' queue")
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64),
              help="pool processes per worker (prefork)")
@click.option("--tasks", default=60, show_default=True, type=click.IntRange(1, 100_000),
              help="tasks to enqueue, each calling the vendor once")
@click.option("--rate", default="10/s", show_default=True, help="the limit, e.g. 10/s, 5/30s")
@click.option("--burst", default=1, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--redis-url", default=None,
              help="use this Redis (broker, results and throttle) instead of an embedded one")
@click.option("--compare", is_flag=True,
              help="also run the job with Celery's rate_limit and with no throttle")
@click.option("--json", "as_json", is_flag=True,
              help="print one JSON object (with --compare: keyed by mode)")
@click.option("--vendor-bind", default="127.0.0.1:0", show_default=True,
              help="HOST:PORT for the vendor API (a fixed port for --workers 0)")
@click.option("--scenario", default="rate", show_default=True,
              type=click.Choice(["rate", "quota", "tenants", "429"]),
              help="what the vendor enforces: rate: its per-second limit; quota: also an exact "
                   "quota in any 10 s; tenants: its limit per tenant (a loud one, then a quiet "
                   "one); 429: its limit plus one 429 with Retry-After (an upstream hiccup)")
def demo(workers: int, concurrency: int, tasks: int, rate: str, burst: int,
         redis_url: str | None, compare: bool, as_json: bool, vendor_bind: str,
         scenario: str) -> None:
    """Run M tasks against a vendor API that answers 429 past its limit, on K real workers."""
    from .demo.runner import MODES, Options, failed, redis_for, render, run_mode, stderr_progress

    try:
        Rate.parse(rate, owner="rate")
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc).removeprefix("rate: "), param_hint="--rate") from exc
    host, _, port = vendor_bind.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, not {vendor_bind!r}",
                                 param_hint="--vendor-bind")
    if workers == 0 and not redis_url:
        raise click.BadParameter("--workers 0 needs the workers' --redis-url",
                                 param_hint="--workers")
    if workers == 0 and scenario != "rate":
        # already-running workers read their scenario from their own environment
        raise click.BadParameter("--workers 0 runs only --scenario rate",
                                 param_hint="--scenario")
    options = Options(workers=workers, concurrency=concurrency, tasks=tasks, rate=rate,
                      burst=burst, redis_url=redis_url, vendor_bind=(host, int(port)),
                      scenario=scenario)
    progress = stderr_progress(True)
    modes = MODES if compare else MODES[:1]
    with redis_for(options) as (broker, store):
        reports = {mode: run_mode(mode, options, broker, store, progress) for mode in modes}
    if as_json:
        payload = ({m: r.as_dict() for m, r in reports.items()} if compare
                   else reports["taskthrottle"].as_dict())
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(f"{tasks} tasks, {workers} workers x {concurrency} processes, limit {rate} "
                   f"burst {burst}; counted on the vendor's clock"
                   + ("" if scenario == "rate" else f"; scenario {scenario}") + "\n")
        click.echo(render(reports))
    reasons = failed(reports, scenario)
    for reason in reasons:
        click.echo(f"FAILED: {reason}", err=True)
    sys.exit(1 if reasons else 0)


# --- the operator's commands: status, watch, set, unset, pause, resume, reset ------------------
# What the workers decide by, shown and changed (taskthrottle.admin reads and writes it).

#: The environment variable that names the throttle store when no --redis-url or app gives it.
REDIS_URL_ENV = "TASKTHROTTLE_REDIS_URL"
_CELERY_APP = "taskthrottle.celery_app"  # ctx.meta: the app of `celery -A APP throttle ...`
_HEADER = ("NAME", "LIMITS", "OVERRIDE", "LEFT", "NEXT", "PAUSED", "LEASES", "KEYS")


@dataclass(frozen=True)
class _Store:
    """Where the commands look: a Redis client, its URL, the prefix, the app's throttles."""

    client: Any
    url: str
    prefix: str
    throttles: dict[str, Throttle]

    @contextlib.contextmanager
    def talking(self) -> Iterator[None]:
        """Redis errors as a one-line error naming the store (its password masked)."""
        try:
            yield
        except ConfigurationError as exc:  # before redis_errors, which holds ValueError
            raise click.UsageError(str(exc)) from None
        except redis_errors as exc:
            raise click.ClickException(
                f"Redis at {admin.redact_url(self.url)}: {admin.scrub(str(exc), self.url)}"
            ) from None


def _store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = (
        click.option("--redis-url", metavar="URL", default=None,
                     help="the throttle store [default: the app's taskthrottle_redis_url, "
                          f"else ${REDIS_URL_ENV}]"),
        click.option("-A", "--app", "app_path", metavar="MODULE[:ATTR]", default=None,
                     help="a Celery app: its tasks' throttles, its store and its prefix"),
        click.option("--prefix", default=None,
                     help=f"the key prefix [default: the app's, else {DEFAULT_PREFIX!r}]"),
        click.option("--json", "as_json", is_flag=True, help="print JSON"),
    )
    for option in reversed(options):
        command = option(command)
    return command


def _open_store(redis_url: str | None, app_path: str | None, prefix: str | None) -> _Store:
    app = _load_app(app_path) if app_path else click.get_current_context().meta.get(_CELERY_APP)
    throttles: dict[str, Throttle] = {}
    settings = None
    if app is not None:
        try:
            throttles, settings = admin.app_throttles(app)
        except ConfigurationError as exc:
            raise click.ClickException(f"the app's settings: {exc}") from None
    url = redis_url or (settings.redis_url if settings else None) or os.environ.get(REDIS_URL_ENV)
    if not url:
        raise click.UsageError(
            f"no throttle store: give --redis-url, set {REDIS_URL_ENV} or name the app (-A)")
    if prefix is None:
        prefix = settings.prefix if settings else DEFAULT_PREFIX
    if "{" in prefix or "}" in prefix:
        raise click.BadParameter(f"{prefix!r} holds '{{' or '}}'", param_hint="--prefix")
    try:
        store.check(url)
        client = store.client(url, 5.0)
    except (ValueError, TypeError, redis.RedisError, RedisClusterException) as exc:
        raise click.BadParameter(f"{admin.redact_url(url)}: {admin.scrub(str(exc), url)}",
                                 param_hint="--redis-url") from None
    return _Store(client, url, prefix, throttles)


def _load_app(path: str) -> Any:
    """``module:attr`` or ``module`` (its ``app`` or ``celery``), found as ``celery -A`` does."""
    from celery import Celery
    from celery.app.utils import find_app

    try:
        app = find_app(path)
    except Exception as exc:  # an app module may raise anything at import
        raise click.BadParameter(f"cannot load {path!r}: {exc!r}", param_hint="-A/--app") from None
    if not isinstance(app, Celery):
        raise click.BadParameter(f"{path!r} is not a Celery app but {app!r}",
                                 param_hint="-A/--app")
    return app


def _checked_name(name: str) -> str:
    try:
        return validate_name(name)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _unknown(store: _Store, name: str) -> bool:
    """Whether nothing knows the throttle: not the app, nothing in Redis under the prefix."""
    return name not in store.throttles and not admin.exists(store.client, name, store.prefix)


def _echo_json(payload: object) -> None:
    click.echo(json.dumps(payload, indent=2))


def _duration(seconds: float) -> str:
    """Seconds for people: "0.3 s", "42 s", "12 min", "3.5 h", "2.1 d"."""
    if seconds < 10:
        return f"{max(seconds, 0.1):.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _left(state: admin.BucketState | None) -> str:
    if state is None:
        return "-"
    return " ".join(f"{'?' if limit.left is None else limit.left}/"
                    f"{'?' if limit.capacity is None else limit.capacity}"
                    for limit in state.limits) or "-"


def _when(seconds: float | None, word: str) -> str:
    return "-" if seconds is None else f"{word} {_duration(seconds)}" if seconds > 0 else "-"


def _rows(rows: Sequence[admin.ThrottleStatus]) -> list[tuple[str, ...]]:
    table: list[tuple[str, ...]] = []
    for row in rows:
        override = "-"
        if row.override is not None:
            override = row.override.text or row.override.spec
            if row.override.since is not None:
                override += f" ({_duration(max(0.0, row.now - row.override.since))} ago)"
        cap = row.concurrency
        if row.keyed:
            leases = f"{row.leases} ({cap}/key)" if cap else str(row.leases or "-")
        else:
            leases = f"{row.leases}/{cap}" if cap else str(row.leases or "-")
        bucket = row.bucket
        table.append((
            row.name,
            "?" if row.limits is None else " ".join(row.limits) or "-",
            override,
            _left(bucket),
            "-" if bucket is None else "now" if bucket.next_free <= 0
            else f"in {_duration(bucket.next_free)}",
            _when(row.paused_until, "for"),
            leases,
            str(row.keys) if row.keyed else "-",
        ))
        for state in row.key_states:
            label = state.key if state.key is not None else (state.key_id or "")[:13]
            table.append((
                f"  key {label}", "", "", _left(state),
                "now" if state.next_free <= 0 else f"in {_duration(state.next_free)}",
                _when(state.paused_until, "for"),
                f"{state.leases}/{cap}" if cap else str(state.leases or "-"), "",
            ))
    return table


def _render(store: _Store, rows: Sequence[admin.ThrottleStatus]) -> str:
    where = f"{admin.redact_url(store.url)} prefix {store.prefix!r}"
    if not rows:
        return f"no throttles at {where}" + ("" if store.throttles else " (no app given: -A)")
    clock = datetime.datetime.fromtimestamp(rows[0].now, datetime.timezone.utc)
    lines = [_HEADER, *_rows(rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADER))]
    text = [f"{where}, Redis clock {clock:%Y-%m-%d %H:%M:%S} UTC", ""]
    text += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
             .rstrip() for line in lines]
    if any(row.limits is None for row in rows):
        text += ["", "?: seen only in Redis (name the app with -A for its limits)"]
    return "\n".join(text)


@click.command("status")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--keys", "with_keys", is_flag=True,
              help="also list each key's bucket of keyed throttles")
@_store_options
def status_command(names: tuple[str, ...], with_keys: bool, redis_url: str | None,
                   app_path: str | None, prefix: str | None, as_json: bool) -> None:
    """Show throttles: limits, override, tokens/quota left, next free slot, pause, leases, keys.

    Throttles come from the app (-A) and from whatever Redis holds under the prefix.
    """
    store = _open_store(redis_url, app_path, prefix)
    names = tuple(_checked_name(name) for name in names)
    with store.talking():
        rows = admin.status(store.client, store.throttles, names, prefix=store.prefix,
                            keys=with_keys)
    for row in rows:
        if not row.defined and row.keyed is None and row.override is None \
                and not row.paused_until:
            _warn(f"no throttle {row.name!r} in the app or under prefix {store.prefix!r}")
    if as_json:
        _echo_json([row.as_dict() for row in rows])
    else:
        click.echo(_render(store, rows))


@click.command("watch")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--keys", "with_keys", is_flag=True,
              help="also list each key's bucket of keyed throttles")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.05, 3600),
              help="seconds between frames")
@click.option("--count", default=None, type=click.IntRange(1), help="stop after N frames")
@_store_options
def watch_command(names: tuple[str, ...], with_keys: bool, interval: float, count: int | None,
                  redis_url: str | None, app_path: str | None, prefix: str | None,
                  as_json: bool) -> None:
    """Redraw the status table every --interval seconds until Ctrl-C (--json: one line each)."""
    store = _open_store(redis_url, app_path, prefix)
    names = tuple(_checked_name(name) for name in names)
    clear = not as_json and sys.stdout.isatty()
    frames = 0
    try:
        while True:
            try:
                with store.talking():
                    rows = admin.status(store.client, store.throttles, names,
                                        prefix=store.prefix, keys=with_keys)
                text = (json.dumps([row.as_dict() for row in rows]) if as_json
                        else _render(store, rows))
            except click.ClickException as exc:  # an outage is shown, and watched through
                text = f"error: {exc.format_message()}"
            if clear:
                click.clear()
            elif frames and not as_json:
                click.echo()
            click.echo(text)
            frames += 1
            if count is not None and frames >= count:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


@click.command("set")
@click.argument("name")
@click.argument("limits", nargs=-1, required=True, metavar="LIMIT...")
@_store_options
def set_command(name: str, limits: tuple[str, ...], redis_url: str | None,
                app_path: str | None, prefix: str | None, as_json: bool) -> None:
    """Override NAME's limits for every worker until `unset` ("5/s", "10/s,burst=5",
    "1000/d,exact"; several must all allow a start). The concurrency cap stays."""
    name = _checked_name(name)
    parsed = []
    for text in limits:
        try:
            parsed.append(Limit.parse(text, owner=f"limit {text!r}"))
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), param_hint="LIMIT") from None
    store = _open_store(redis_url, app_path, prefix)
    throttle = store.throttles.get(name)
    with store.talking():
        if _unknown(store, name):
            _warn(f"no throttle {name!r} in the app or under prefix {store.prefix!r} yet: "
                  "stored anyway")
        override = admin.set_override(store.client, name, parsed, " ".join(limits),
                                      store.prefix)
    capacity = min(limit.capacity for limit in parsed)
    if throttle is not None and capacity < throttle.capacity:
        _warn(f"the override grants at most {capacity} at once, the code's limits "
              f"{throttle.capacity}: a task costing more is refused")
    if as_json:
        _echo_json({"name": name, "override": override.as_dict(),
                    "limits": None if throttle is None else [str(x) for x in throttle.limits]})
        return
    code = f" (the code says {' '.join(str(x) for x in throttle.limits) or '-'})" \
        if throttle is not None else ""
    click.echo(f"{name}: override {override.text} stored{code}; every worker obeys it at its "
               "next decision")


@click.command("unset")
@click.argument("name")
@_store_options
def unset_command(name: str, redis_url: str | None, app_path: str | None,
                  prefix: str | None, as_json: bool) -> None:
    """Remove NAME's override: the code's limits apply again at the next decision."""
    name = _checked_name(name)
    store = _open_store(redis_url, app_path, prefix)
    with store.talking():
        removed = admin.unset_override(store.client, name, store.prefix)
    if as_json:
        _echo_json({"name": name, "removed": removed})
    else:
        click.echo(f"{name}: override removed" if removed else f"{name}: no override was set")


@click.command("pause")
@click.argument("name")
@click.argument("seconds", type=click.FloatRange(0, 366 * 86400))
@click.option("--key", default=None, help="only this key's bucket (of a keyed throttle)")
@_store_options
def pause_command(name: str, seconds: float, key: str | None, redis_url: str | None,
                  app_path: str | None, prefix: str | None, as_json: bool) -> None:
    """Let nothing of NAME start for SECONDS (Redis clock); a pause only grows."""
    name = _checked_name(name)
    store = _open_store(redis_url, app_path, prefix)
    with store.talking():
        if _unknown(store, name):
            _warn(f"no throttle {name!r} in the app or under prefix {store.prefix!r} yet: "
                  "paused anyway")
        left = admin.pause(store.client, name, seconds, throttle=store.throttles.get(name),
                           key=key, prefix=store.prefix)
    if as_json:
        _echo_json({"name": name, "key": key, "paused_until": round(left, 6)})
    else:
        which = f"{name} key {key}" if key is not None else name
        click.echo(f"{which}: paused for {_duration(left)}" if left > 0
                   else f"{which}: not paused (0 s)")


@click.command("resume")
@click.argument("name")
@click.option("--key", default=None, help="only this key's bucket (of a keyed throttle)")
@_store_options
def resume_command(name: str, key: str | None, redis_url: str | None, app_path: str | None,
                   prefix: str | None, as_json: bool) -> None:
    """Lift NAME's pause (without --key: the throttle-wide one; with it, that key's)."""
    name = _checked_name(name)
    store = _open_store(redis_url, app_path, prefix)
    with store.talking():
        admin.resume(store.client, name, throttle=store.throttles.get(name), key=key,
                     prefix=store.prefix)
        still = [] if key is not None else [
            state.key or state.key_id for row in admin.status(
                store.client, store.throttles, [name], prefix=store.prefix, keys=True)
            for state in row.key_states if state.paused_until > 0]
    if still:  # a key's own pause (RateLimited for that key) is not the throttle's
        _warn(f"{len(still)} key{' is' if len(still) == 1 else 's are'} still paused on "
              f"their own: resume each with --key ({', '.join(map(str, still[:5]))}"
              f"{', ...' if len(still) > 5 else ''})")
    if as_json:
        _echo_json({"name": name, "key": key, "resumed": True,
                    "keys_paused": [str(k) for k in still]})
    else:
        click.echo(f"{name} key {key}: resumed" if key is not None else f"{name}: resumed")


@click.command("reset")
@click.argument("name")
@click.option("--key", default=None, help="only this key's bucket (of a keyed throttle)")
@click.option("--all", "everything", is_flag=True,
              help="also delete the override and the throttle-wide pause")
@_store_options
def reset_command(name: str, key: str | None, everything: bool, redis_url: str | None,
                  app_path: str | None, prefix: str | None, as_json: bool) -> None:
    """Delete NAME's bucket state, windows and leases (every key's, or only --key's): the
    limits start full. The override and pause stay unless --all."""
    name = _checked_name(name)
    if key is not None and everything:
        raise click.UsageError("--all resets the whole throttle: give it without --key")
    store = _open_store(redis_url, app_path, prefix)
    throttle = store.throttles.get(name)
    if throttle is not None and key is not None and throttle.key is None:
        raise click.UsageError(f"throttle {name!r} is not keyed: reset it without --key")
    with store.talking():
        deleted = admin.reset(store.client, name, key=key, prefix=store.prefix,
                              everything=everything)
    if as_json:
        _echo_json({"name": name, "key": key, "deleted": len(deleted), "keys": deleted})
        return
    kinds: dict[str, int] = {}
    for redis_key in deleted:
        kind = admin.key_kind(redis_key, store.prefix)
        kinds[kind] = kinds.get(kind, 0) + 1
    detail = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    which = f"{name} key {key}" if key is not None else name
    click.echo(f"{which}: deleted {len(deleted)} Redis key{'' if len(deleted) == 1 else 's'}"
               + (f" ({detail})" if detail else ""))


@click.group("throttle")
@click.pass_context
def celery_throttle(ctx: click.Context) -> None:
    """taskthrottle: show and change the shared throttles of the app (-A)."""
    # `celery -A proj throttle ...`: celery loaded the app into ctx.obj; without -A its
    # ctx.obj holds Celery's default app, which defines nothing here.
    app = getattr(ctx.obj, "app", None)
    if app is not None and ctx.find_root().params.get("app"):
        ctx.meta[_CELERY_APP] = app


for _command in (status_command, watch_command, set_command, unset_command, pause_command,
                 resume_command, reset_command):
    main.add_command(_command)
    celery_throttle.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
