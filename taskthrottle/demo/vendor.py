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

    def __init__(self, allowed: int, window: float) -> None:
        self.allowed = allowed
        self.window = window
        self.calls: list[tuple[float, str, int]] = []
        self._accepted: deque[float] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @classmethod
    def for_rate(cls, count: float, period: float, burst: int) -> Vendor:
        """The vendor a throttle of ``count/period`` with ``burst`` promises to satisfy."""
        window = max(1.0, period)
        return cls(math.floor(burst + count * window / period + 1e-9), window)

    def call(self, task_id: str) -> tuple[int, float]:
        """Record one call; return its status and, for a 429, the seconds to wait."""
        with self._lock:
            now = time.monotonic()
            while self._accepted and self._accepted[0] <= now - self.window:
                self._accepted.popleft()
            if len(self._accepted) >= self.allowed:
                retry_after = self._accepted[0] + self.window - now
                self.calls.append((now, task_id, 429))
                return 429, retry_after
            self._accepted.append(now)
            self.calls.append((now, task_id, 200))
            return 200, 0.0

    # -- the report -------------------------------------------------------------------------
    def snapshot(self) -> list[tuple[float, str, int]]:
        with self._lock:
            return list(self.calls)

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
                    task = parse_qs(url.query).get("task", [""])[0]
                    status, retry_after = vendor.call(task)
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
