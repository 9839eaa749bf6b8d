"""The README's example, runnable unchanged.

    celery -A shop worker -l INFO        # in one terminal (or several: they share the limit)
    python shop.py                       # in another: enqueue 20 orders and wait for them

REDIS_URL points both at your Redis (default: the local one on 6379).
"""

import os

from celery import Celery

from taskthrottle import Throttle, ThrottledTask

REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")

app = Celery("shop", broker=f"{REDIS}/0", backend=f"{REDIS}/0")
app.conf.taskthrottle_redis_url = f"{REDIS}/1"  # default: the broker URL when it is Redis

vendor = Throttle("vendor-x", "10/s")  # burst=1 by default, like Celery's own bucket


@app.task(base=ThrottledTask, throttle=vendor)  # several task types may share one Throttle
def push_order(order_id):
    return f"order {order_id} pushed"


@app.task(base=ThrottledTask, throttle="5/s")  # a throttle of its own, named after the task
def sync_customer(customer_id):
    return f"customer {customer_id} synced"


if __name__ == "__main__":
    results = [push_order.delay(i) for i in range(20)] + [sync_customer.delay(1)]
    for result in results:
        print(result.get(timeout=60))
