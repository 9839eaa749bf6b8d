"""`taskthrottle demo --scenario ...`: each scenario once, on real workers, judged by the vendor."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from taskthrottle.cli import main
from taskthrottle.demo.runner import tenants_for
from taskthrottle.demo.vendor import Vendor


def _demo(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["demo", *args, "--json"])
    assert 0 == result.exit_code, (result.stdout, result.stderr)
    report: dict[str, Any] = json.loads(result.stdout)
    assert 0 == report["lost"]
    assert 0 == report["duplicates"]
    assert report["tasks"] == report["done"]
    return report


@pytest.mark.fleet
def test_quota_scenario_keeps_the_exact_quota() -> None:
    report = _demo("--scenario", "quota", "--tasks", "30")
    figures = report["figures"]
    assert 0 == report["vendor_429"]
    assert (20, 10.0) == (figures["quota"], figures["quota_window_s"])
    assert 0 < figures["max_in_quota_window"] <= 20
    assert report["max_in_1s"] <= 11
    assert report["seconds"] >= 9.0  # 30 calls with 20 in any 10 s cannot finish sooner


@pytest.mark.fleet
def test_tenants_scenario_lets_the_quiet_tenant_through() -> None:
    report = _demo("--scenario", "tenants", "--tasks", "40")
    figures = report["figures"]
    assert 0 == report["vendor_429"]
    assert (36, 4) == (figures["loud_tasks"], figures["quiet_tasks"])
    assert (36, 4) == (figures["loud_done"], figures["quiet_done"])
    for tenant in ("loud", "quiet"):
        assert figures[f"{tenant}_max_in_1s"] <= figures["tenant_limit_per_1s"]
    # enqueued after all 36 loud tasks, yet done before the loud tenant's last
    assert figures["quiet_finish_s_max"] < figures["loud_finish_s_max"]


@pytest.mark.fleet
def test_429_scenario_pauses_the_fleet() -> None:
    report = _demo("--scenario", "429", "--tasks", "40")
    figures = report["figures"]
    assert 1 == report["vendor_429"] == figures["hiccup_429"]
    assert 0 == figures["limit_429"]
    assert 0 == figures["calls_during_pause"]
    assert 40 == figures["accepted_once"]
    assert report["seconds"] >= figures["pause_s"]


def test_workers_0_runs_only_the_rate_scenario() -> None:
    result = CliRunner().invoke(main, ["demo", "--workers", "0", "--redis-url",
                                       "redis://127.0.0.1:1", "--scenario", "quota"])
    assert 2 == result.exit_code
    assert "--workers 0 runs only --scenario rate" in result.stderr


def test_vendor_quota_tenants_and_hiccup() -> None:
    quota = Vendor(100, 1.0, quota=(3, 10.0))
    assert [200, 200, 200, 429] == [quota.call(str(i))[0] for i in range(4)]

    tenants = Vendor(2, 1.0, per_tenant=True)
    statuses = [tenants.call("a", "loud")[0] for _ in range(3)]
    assert [200, 200, 429] == statuses
    assert 200 == tenants.call("b", "quiet")[0]
    assert ["loud"] * 3 + ["quiet"] == [t for *_, t in tenants.snapshot_tenants()]

    hiccup = Vendor(100, 1.0, hiccup_at=2, hiccup_retry_after=2)
    assert [200, 429, 200] == [hiccup.call(str(i))[0] for i in range(3)]
    assert hiccup.pause is not None
    assert 2.0 == pytest.approx(hiccup.pause[1] - hiccup.pause[0])


def test_tenants_loud_first_then_quiet() -> None:
    assert ["loud"] * 36 + ["quiet"] * 4 == tenants_for(40)
    assert ["loud"] == tenants_for(1)
    assert ["loud", "quiet"] == tenants_for(2)
