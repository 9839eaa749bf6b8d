"""A local "vendor API" that enforces its limit on its own clock and answers 429 when exceeded.

It is the demo's referee: every call is timed here (``time.monotonic`` of this process), so
"most calls in any 1 s window" is counted on one clock, whoever made the calls.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class Vendor:
    """Accepts at most ``allowed`` calls in any window of ``window`` seconds.

    Attributes:
        calls: ``(monotonic time, task id, status)`` of every call received, in order.
    """

    def __init__(self, allowed: int, window: float, *, quota: tuple[int, float] | None = None,
                 per_tenant: bool = False, hiccup_at: int | None = None,
                 hiccup_retry_after: int = 2) -> None:
        self.allowed = allowed
        self.window = window
        #: a second limit (``allowed``, ``window``), e.g. an exact quota of 20 in any 10 s
        self.quota = quota
        #: enforce the limits per tenant (the ``tenant`` query parameter) instead of globally
        self.per_tenant = per_tenant
        #: answer the ``hiccup_at``-th call (1-based) with 429 and ``Retry-After``, whatever
        #: the limit says (an upstream hiccup); the pause it asks for is kept in :attr:`pause`
        self.hiccup_at = hiccup_at
        self.hiccup_retry_after = hiccup_retry_after
        self.pause: tuple[float, float] | None = None
        self.calls: list[tuple[float, str, int]] = []
        #: the tenant of every call, in the order of :attr:`calls`
        self.tenants: list[str] = []
        self._accepted: dict[tuple[str, float], deque[float]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def _limits(self) -> list[tuple[int, float]]:
        return [(self.allowed, self.window)] + ([self.quota] if self.quota else [])

    @classmethod
    def for_rate(cls, count: float, period: float, burst: int) -> Vendor:
        """The vendor a throttle of ``count/period`` with ``burst`` promises to satisfy."""
        window = max(1.0, period)
        return cls(math.floor(burst + count * window / period + 1e-9), window)

    def call(self, task_id: str, tenant: str = "") -> tuple[int, float]:
        """Record one call; return its status and, for a 429, the seconds to wait."""
        with self._lock:
            now = time.monotonic()
            self.tenants.append(tenant)
            if self.hiccup_at is not None and len(self.calls) + 1 == self.hiccup_at:
                self.pause = (now, now + self.hiccup_retry_after)
                self.calls.append((now, task_id, 429))
                return 429, float(self.hiccup_retry_after)
            scope = tenant if self.per_tenant else ""
            queues = []
            retry_after, refused = 0.0, False
            for allowed, window in self._limits():
                accepted = self._accepted.setdefault((scope, window), deque())
                while accepted and accepted[0] <= now - window:
                    accepted.popleft()
                if len(accepted) >= allowed:
                    refused = True
                    retry_after = max(retry_after, accepted[0] + window - now)
                queues.append(accepted)
            if refused:
                self.calls.append((now, task_id, 429))
                return 429, retry_after
            for accepted in queues:
                accepted.append(now)
            self.calls.append((now, task_id, 200))
            return 200, 0.0

    # -- the report -------------------------------------------------------------------------
    def snapshot(self) -> list[tuple[float, str, int]]:
        with self._lock:
            return list(self.calls)

    def snapshot_tenants(self) -> list[tuple[float, str, int, str]]:
        """:meth:`snapshot` with each call's tenant."""
        with self._lock:
            return [(*call, tenant) for call, tenant in zip(self.calls, self.tenants, strict=True)]

    @staticmethod
    def max_in_window(times: list[float], window: float = 1.0) -> int:
        """Most calls in any closed window of ``window`` seconds."""
        times = sorted(times)
        return max((bisect.bisect_right(times, t + window) - i for i, t in enumerate(times)),
                   default=0)

    def stats(self) -> dict[str, Any]:
        calls = self.snapshot()
        per_task = Counter(task for _, task, _ in calls)
        return {
            "calls": len(calls),
            "status_429": sum(1 for *_, status in calls if status == 429),
            "tasks_called": len(per_task),
            "called_twice": sorted(task for task, n in per_task.items() if n > 1),
        }

    # -- HTTP -------------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread (loopback by default); return the base URL."""
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/call":
                    query = parse_qs(url.query)
                    task = query.get("task", [""])[0]
                    status, retry_after = vendor.call(task, query.get("tenant", [""])[0])
                    body = b'{"ok": true}' if status == 200 else b'{"error": "rate limited"}'
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", str(max(1, math.ceil(retry_after))))
                elif url.path == "/stats":
                    body = json.dumps(vendor.stats()).encode()
                    self.send_response(200)
                else:
                    body = b"{}"
                    self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://{host}:{self._server.server_address[1]}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
