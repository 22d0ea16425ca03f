"""A small real HTTP server enforcing a fixed-window rate limit the way Voiceflow's runtime does:
one window per ``authorization`` value, starting at its first request, with ``X-RateLimit-*`` on
every response and ``Retry-After`` (floored seconds) on a 429."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class FixedWindowServer:
    limit: int
    window_seconds: float
    served: int = 0
    rejected: int = 0
    max_in_window: int = 0
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self.served = self.rejected = self.max_in_window = 0
            self._windows.clear()

    def _take(self, key: str) -> tuple[bool, int, float]:
        now = time.time()
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if now >= start + self.window_seconds:
                start, count = now, 0
            allowed = count < self.limit
            if allowed:
                count += 1
                self.served += 1
                self.max_in_window = max(self.max_in_window, count)
            else:
                self.rejected += 1
            self._windows[key] = (start, count)
            return allowed, self.limit - count, start + self.window_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        key = headers.get(b"authorization", b"").decode()
        allowed, remaining, reset_at = self._take(key)
        reset_iso = datetime.fromtimestamp(reset_at, timezone.utc).isoformat(
            timespec="milliseconds"
        )
        response_headers = [
            (b"content-type", b"application/json"),
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(max(0, remaining)).encode()),
            (b"x-ratelimit-reset", reset_iso.replace("+00:00", "Z").encode()),
        ]
        if allowed:
            status, body = 200, {"ok": True}
        else:
            wait = max(0.0, reset_at - time.time())
            response_headers.append((b"retry-after", str(math.floor(wait)).encode()))
            status = 429
            body = {"code": 429, "status": "Too Many Requests", "data": "Too Many Requests"}
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yield its base URL.

    The socket is bound and listening before the thread starts, so clients can connect at once
    (the kernel queues them until uvicorn accepts): nothing to poll for.
    """
    # IPPROTO_TCP lets asyncio turn on TCP_NODELAY; without it each answer waits ~40 ms for a
    # delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
