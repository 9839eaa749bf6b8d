"""The fleet on a real 3-master Redis Cluster (loopback ports): one slot per throttle, several
throttles of one task across slots without CROSSSLOT, the bound on one clock."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from fleetlib import fleet, records

from taskthrottle import store
from taskthrottle._procs import RedisClusterServers, RedisServer
from taskthrottle.cli import main as cli
from taskthrottle.testing import max_in_window

pytestmark = pytest.mark.fleet

SECOND = 1_000_000


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers(3) as servers:
        yield servers


@pytest.fixture(scope="module")
def app(cluster: RedisClusterServers, server: RedisServer) -> Iterator[Any]:
    server.client(1).flushdb()
    with fleet(server.url(1), cluster.url(), server.url(2), count=3, concurrency=2) as fleet_app:
        yield fleet_app


def all_keys(cluster: RedisClusterServers) -> dict[bytes, int]:
    """Every key on every node, with its slot."""
    found = {}
    for node in cluster.nodes:
        client = node.client()
        for key in client.scan_iter(count=1000):
            found[key] = int(client.execute_command("CLUSTER", "KEYSLOT", key))  # type: ignore[no-untyped-call]
    return found


def test_the_bound_holds_on_a_cluster(app: Any, rec: redis.Redis,
                                      cluster: RedisClusterServers) -> None:
    results = [app.main_task.delay(i) for i in range(40)]
    assert 40 == len([result.get(timeout=60) for result in results])
    starts = records(rec, "starts:main")
    assert [1] * 40 == list(Counter(s["id"] for s in starts).values())
    assert max_in_window([s["at"] for s in starts], SECOND) <= 11


def test_several_throttles_across_slots_and_one_slot_per_throttle(
        app: Any, rec: redis.Redis, cluster: RedisClusterServers) -> None:
    results = [app.tenant_task.delay(i, tenant=f"t{i % 4}") for i in range(40)]
    assert 40 == len([result.get(timeout=60) for result in results])
    starts = records(rec, "starts:tenant")
    assert [1] * 40 == list(Counter(s["id"] for s in starts).values())
    assert max_in_window([s["at"] for s in starts], SECOND) <= 31  # the vendor's 30/s
    slots: dict[bytes, set[int]] = defaultdict(set)
    for key, slot in all_keys(cluster).items():
        slots[key.split(b"}")[0]].add(slot)
    assert {b"taskthrottle:{fleet-vendor", b"taskthrottle:{fleet-tenant"} <= set(slots)
    assert all(1 == len(found) for found in slots.values())  # each throttle: one slot
    assert slots[b"taskthrottle:{fleet-vendor"] != slots[b"taskthrottle:{fleet-tenant"]


def test_the_cli_reads_a_cluster(app: Any, cluster: RedisClusterServers) -> None:
    app.main_task.delay(99).get(timeout=30)
    result = CliRunner().invoke(cli, ["status", "fleet-main", "--json",
                                      "--redis-url", cluster.url()])
    assert 0 == result.exit_code, result.output
    (row,) = json.loads(result.output)
    assert "fleet-main" == row["name"]


def test_a_cluster_url_is_checked_without_connecting() -> None:
    for bad, message in (("redis+cluster://h", "host:port"),
                         ("redis+cluster://h:1/3", "only db 0"),
                         ("redis+sentinel://h:1/name/x", "not a number")):
        with pytest.raises(ValueError, match=message):
            store.check(bad)
    with pytest.raises(ValueError, match="names the master"):
        store.client("redis+sentinel://h:1", 0.1)
