"""The fleet job, side by side: taskthrottle vs Celery's built-in rate_limit vs nothing.

    python bench/fleet.py [--tasks 200] [--workers 3] [--concurrency 2] [--rate 10/s]

All tasks are enqueued at once (a backlog); every call is timed by the vendor's own clock.
  utilisation          achieved calls/s ÷ the limit (target: ≥ 95 % under backlog)
  max in 1 s           most vendor calls in any 1 s window (the bound is burst + rate × 1 s)
  re-publishes / task  deferrals per executed task (target: ≤ 1.1: each task deferred ~once)
"""

from __future__ import annotations

import argparse

from taskthrottle.demo.runner import MODES, Options, redis_for, run_mode, stderr_progress


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rate", default="10/s")
    parser.add_argument("--burst", type=int, default=1)
    args = parser.parse_args()
    options = Options(workers=args.workers, concurrency=args.concurrency, tasks=args.tasks,
                      rate=args.rate, burst=args.burst)
    with redis_for(options) as (broker, store):
        reports = {m: run_mode(m, options, broker, store, stderr_progress(True)) for m in MODES}

    bound = args.burst + reports["taskthrottle"].limit_per_s
    print(f"{args.tasks} tasks at once, {args.workers} workers x {args.concurrency} processes, "
          f"limit {args.rate} burst {args.burst} (bound in any 1 s: {bound:g})")
    print(f"{'':22}{'utilisation':>12}{'max in 1 s':>12}{'vendor 429s':>12}"
          f"{'re-pub/task':>12}{'lost':>6}{'twice':>6}")
    for mode, r in reports.items():
        print(f"{mode:22}{r.achieved_per_s / r.limit_per_s:>11.1%} {r.max_in_1s:>11}"
              f"{r.vendor_429:>12}{r.deferrals_per_task:>12.2f}{r.lost:>6}{r.duplicates:>6}")


if __name__ == "__main__":
    main()
