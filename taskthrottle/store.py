"""The throttle store's URL: one setting for one Redis, a Redis Cluster or a Sentinel-watched
master, and the redis-py client it stands for.

* ``redis://[user:password@]host:port/db``, ``rediss://…`` (TLS), ``unix:///path?db=N``
* ``redis+cluster://[user:password@]host:port[,host:port…]`` (``rediss+cluster://`` for TLS):
  a Redis Cluster, found from any of the nodes given. Every key of one throttle shares its hash
  tag, so a decision never spans two slots; several throttles of one task are decided one by
  one, each in its own slot.
* ``redis+sentinel://[user:password@]host:port[,host:port…]/service_name[/db]``: the master the
  Sentinels name ``service_name``, followed through a failover (the user and password are the
  master's).

Query options (``?ssl_cert_reqs=none``, ``?password=…``) are redis-py's.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel")


def is_store_url(url: object) -> bool:
    return isinstance(url, str) and url.split("://", 1)[0] in SCHEMES


def redact(url: str) -> str:
    """The URL without its password (in the user part or a ``password=`` option)."""
    url = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


def check(url: str) -> None:
    """Raise ``ValueError``/``TypeError`` for a URL redis-py would refuse, without connecting."""
    scheme = url.split("://", 1)[0]
    if "+" in scheme:
        _split(url)
        return
    # Build (not open) a connection: redis-py checks the URL's options only then.
    client(url, 1.0).connection_pool.make_connection()
    path = url.split("://", 1)[1].split("?", 1)[0].partition("/")[2]
    if scheme != "unix" and path and not path.isdigit():
        raise ValueError(f"the db {path!r} is not a number")


def client(url: str, timeout: float) -> Any:
    """A client for ``url`` whose every call times out after ``timeout`` seconds."""
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    scheme = url.split("://", 1)[0]
    if "+" not in scheme:
        return redis.Redis.from_url(url, health_check_interval=30, **options)
    plain, nodes, path, query = _split(url)
    if scheme.endswith("+cluster"):
        # from_url reads the credentials, TLS and other options; the nodes are all of ours.
        return RedisCluster.from_url(
            f"{plain}://{nodes[0][0]}:{nodes[0][1]}{query}", **_credentials(url), **options,
            startup_nodes=[ClusterNode(host, port)  # type: ignore[no-untyped-call]
                           for host, port in nodes])
    service, _, db = path.partition("/")
    if not service:
        raise ValueError("a Sentinel URL names the master: redis+sentinel://host:port/name")
    sentinel = Sentinel(nodes, sentinel_kwargs=options, **options)  # type: ignore[no-untyped-call]
    return sentinel.master_for(  # type: ignore[no-untyped-call]
        service, db=int(db or 0), **_credentials(url), **dict(parse_qsl(query.lstrip("?"))))


def _split(url: str) -> tuple[str, list[tuple[str, int]], str, str]:
    scheme, _, rest = url.partition("://")
    rest, mark, query = rest.partition("?")
    rest = rest.rpartition("@")[2]
    hosts, _, path = rest.partition("/")
    nodes = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"expected host:port, not {host!r}")
        nodes.append((name, int(port)))
    if scheme.endswith("+cluster") and path not in ("", "0"):
        raise ValueError("a Redis Cluster has only db 0")
    if scheme.endswith("+sentinel") and path.partition("/")[2] not in ("",) \
            and not path.partition("/")[2].isdigit():
        raise ValueError(f"the db {path.partition('/')[2]!r} is not a number")
    return scheme.split("+")[0], nodes, path, mark + query


def _credentials(url: str) -> dict[str, str]:
    userinfo, at, _ = url.partition("://")[2].split("?", 1)[0].rpartition("@")
    if not at:
        return {}
    user, colon, password = userinfo.partition(":")
    found = {"password": unquote(password)} if colon else {}
    if user:
        found["username"] = unquote(user)
    return found
