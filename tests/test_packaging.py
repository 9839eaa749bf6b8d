"""The files users run without us: docker-compose.yml and the README's example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from celery import Celery

from taskthrottle._procs import RedisServer, WorkerFleet

ROOT = Path(__file__).resolve().parent.parent


def test_docker_compose_parses_and_names_its_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "worker-a", "worker-b", "demo"} == set(services)
    for name in ("worker-a", "worker-b", "demo"):
        assert "redis://redis:6379/1" == services[name]["environment"]["TASKTHROTTLE_DEMO_STORE"]
    for name in ("worker-a", "worker-b"):
        assert "-Q taskthrottle-demo" in services[name]["command"]
    assert "--workers 0" in services["demo"]["command"]
    assert "0.0.0.0:8700" in services["demo"]["command"]


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
    assert 2 == len(commands)
    assert "taskthrottle demo" in commands[0]
    assert commands[1].endswith("python -m pytest")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_readme_example_is_the_example_file() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "examples" / "shop.py").read_text()
    for line in ('vendor = Throttle("vendor-x", "10/s")',
                 "@app.task(base=ThrottledTask, throttle=vendor)",
                 '@app.task(base=ThrottledTask, throttle="5/s")'):
        assert line in readme
        assert line in example


@pytest.mark.fleet
def test_example_runs_unchanged(server: RedisServer) -> None:
    with RedisServer() as redis_server:
        url = f"redis://127.0.0.1:{redis_server.port}"
        env = {"REDIS_URL": url, "PYTHONPATH": str(ROOT / "examples")}
        # a bare app to ping the workers: importing shop here would register its shared tasks
        pinger = Celery("ping", broker=f"{url}/0", set_as_current=False)
        with WorkerFleet("shop", count=2, concurrency=1, env=env,
                         cwd=str(ROOT / "examples")) as workers:
            workers.wait_ready(pinger)
            out = subprocess.run([sys.executable, "shop.py"], cwd=ROOT / "examples",
                                 env={**os.environ, **env}, capture_output=True,
                                 text=True, timeout=120, check=True).stdout
    expected = [f"order {i} pushed" for i in range(20)] + ["customer 1 synced"]
    assert expected == out.splitlines()
