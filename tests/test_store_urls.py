"""The one store setting with TLS (rediss://) and an ACL user, against real redis-servers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from taskthrottle import BackendError, Outcome, Throttle, config
from taskthrottle._procs import RedisServer, free_port


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for 127.0.0.1, made with openssl."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")
    return d


@pytest.fixture(scope="module")
def tls_acl_server(certs: Path) -> Iterator[tuple[RedisServer, int]]:
    """A TLS port (beside the plain one the harness pings), and one ACL user, ``throttler``
    (password ``s3cret``), who may touch ``taskthrottle:*`` only."""
    tls_port = free_port()
    server = RedisServer(extra_args=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(certs / "server.crt"),
        "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file", str(certs / "ca.crt"),
        "--tls-auth-clients", "no",
        "--user", "default", "on", "nopass", "~probe", "+ping",  # the harness's PING only
        "--user", "throttler", "on", ">s3cret", "~taskthrottle:*", "+@all",
    ])
    with server:
        yield server, tls_port


def app_for(url: str) -> Celery:
    app = Celery("urls", broker="memory://", set_as_current=False)
    app.conf.taskthrottle_redis_url = url
    return app


def test_a_tls_store_with_an_acl_user(tls_acl_server: tuple[RedisServer, int],
                                      certs: Path) -> None:
    _, port = tls_acl_server
    url = f"rediss://throttler:s3cret@127.0.0.1:{port}/0?ssl_ca_certs={certs / 'ca.crt'}"
    client = config.client(app_for(url))
    t = Throttle("tls-acl", "1/h")
    assert Outcome.GRANTED == t.acquire(redis=client).outcome
    assert Outcome.DENIED == t.acquire(redis=client).outcome
    assert client.pttl(t.redis_key()) > 0


@pytest.mark.parametrize(("user", "password", "why"), [
    ("throttler", "wrong", "WRONGPASS|invalid"), ("default", "", "NOPERM|permission")])
def test_a_wrong_user_is_a_backend_error_without_the_password(
        tls_acl_server: tuple[RedisServer, int], certs: Path, user: str, password: str,
        why: str) -> None:
    _, port = tls_acl_server
    url = f"rediss://{user}:{password}@127.0.0.1:{port}/0?ssl_ca_certs={certs / 'ca.crt'}"
    with pytest.raises(BackendError, match=why) as caught:
        Throttle("tls-acl-denied", "1/s").acquire(redis=config.client(app_for(url)))
    assert "wrong" not in str(caught.value) or password != "wrong"
