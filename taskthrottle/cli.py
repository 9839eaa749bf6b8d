"""The ``taskthrottle`` command line; it presents, never decides."""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .exceptions import ConfigurationError
from .rate import Rate


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
def demo(workers: int, concurrency: int, tasks: int, rate: str, burst: int,
         redis_url: str | None, compare: bool, as_json: bool, vendor_bind: str) -> None:
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
    options = Options(workers=workers, concurrency=concurrency, tasks=tasks, rate=rate,
                      burst=burst, redis_url=redis_url, vendor_bind=(host, int(port)))
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
                   f"burst {burst}; counted on the vendor's clock\n")
        click.echo(render(reports))
    reasons = failed(reports)
    for reason in reasons:
        click.echo(f"FAILED: {reason}", err=True)
    sys.exit(1 if reasons else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
