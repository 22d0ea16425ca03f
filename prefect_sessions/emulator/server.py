"""Run the emulator on 127.0.0.1 with a real uvicorn server, in a thread or in the foreground.

``run_emulator()`` binds the listening socket *before* the server thread starts, so the URL it
yields accepts connections at once (the kernel queues them): callers never poll for readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from prefect_sessions.emulator.app import create_app
from prefect_sessions.emulator.config import EmulatorConfig, RateLimit
from prefect_sessions.emulator.faults import ABORT_EXTENSION
from prefect_sessions.emulator.state import EmulatorState, key_id

LOOPBACK = "127.0.0.1"


def _drop_connection(transport: asyncio.Transport, reset: bool) -> None:
    """``reset``: a TCP RST now (SO_LINGER 0), the client sees "connection reset"; otherwise send
    what is buffered, then close, the client sees a body that ends too soon."""
    if not reset:
        transport.close()
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _WithAbort:
    """Puts a connection-reset callable in each request's scope (for the reset and cut faults)."""

    def __init__(self, app: ASGIApp, transport: asyncio.Transport) -> None:
        self.app = app
        self.transport = transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = dict(scope.get("extensions") or {})
        extensions[ABORT_EXTENSION] = functools.partial(_drop_connection, self.transport)
        await self.app({**scope, "extensions": extensions}, receive, send)


class AbortableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, giving the app a way to reset the TCP connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _WithAbort(self.app, transport)


def uvicorn_config(app: FastAPI, *, log_level: str = "warning", **options: Any) -> uvicorn.Config:
    """The uvicorn settings every way of running the emulator shares."""
    # Idle connections stay open 75 s, like the providers' load balancers (60 s and more). With
    # uvicorn's default of 5 s, equal to httpx's keep-alive expiry, a client can reuse a
    # connection the server is closing, and a turn sent on it ends "outcome unknown".
    options = {"timeout_keep_alive": 75, **options}
    return uvicorn.Config(
        app,
        http=AbortableH11Protocol,
        lifespan="off",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
        **options,
    )


def bind(port: int = 0, host: str = LOOPBACK) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port).

    ``IPPROTO_TCP`` must be explicit: asyncio sets ``TCP_NODELAY`` on accepted sockets only when
    their protocol says TCP, and without it every answer waits ~40 ms for a delayed ACK (Nagle).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(1024)
    return sock


class EmulatorHandle:
    """A running emulator: where it listens and its state, for tests to inspect and steer.

    Attributes:
        url: the base URL for every provider, e.g. ``http://127.0.0.1:8787``.
        app: the ASGI app (also usable in process through ``httpx.ASGITransport``).
        state: the in-memory state behind it.
    """

    def __init__(self, url: str, app: FastAPI) -> None:
        self.url = url
        self.app = app
        self.state: EmulatorState = app.state.emulator

    def __repr__(self) -> str:
        return f"EmulatorHandle(url={self.url!r})"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def reset(self) -> None:
        """Forget all sessions, state, counters and windows; restore configured limits/faults."""
        self.state.reset()

    def counters(self) -> list[dict[str, Any]]:
        """One row per (provider, route, key): ``requests``, ``rate_limited``, ``faults``."""
        return self.state.counters.rows()

    def count(
        self, field: str = "requests", *, route: str | None = None, key: str | None = None
    ) -> int:
        """Sum of a counter (``requests``, ``rate_limited`` or ``faults``), optionally for one
        route (``"POST /v4/interact"``) and one plain key."""
        wanted = key_id(key) if key is not None else None
        return sum(
            int(row[field])
            for row in self.counters()
            if (route is None or row["route"] == route) and (wanted is None or row["key"] == wanted)
        )

    def set_limit(
        self, provider: str, limit: str | RateLimit | None, *, route: str | None = None
    ) -> None:
        """Change a provider's limit, or one route's (``route="POST /v4/interact"``); all
        windows restart. ``limit``: ``"20/1s"``, ``"20/1s bucket burst=5 publish=none"``,
        ``"inflight=4"``, a :class:`RateLimit`, or ``"off"``/``None`` (for a route: back to the
        provider's limit)."""
        if provider not in self.state.settings.limits:
            raise ValueError(
                f"unknown provider {provider!r}: {', '.join(sorted(self.state.settings.limits))}"
            )
        parsed = limit if isinstance(limit, RateLimit) or limit is None else RateLimit.parse(limit)
        if route is None:
            self.state.settings.limits[provider] = parsed
        else:
            self.state.set_route_limit(route, parsed)
        self.state.limiter.reset()

    def queue_fault(self, kind: str, *, count: int = 1, route: str | None = None) -> None:
        """Give the next ``count`` requests (whose path starts with ``route``) a fault."""
        self.state.faults.enqueue(kind, count=count, route=route)

    def set_latency(self, latency_ms: float, jitter_ms: float = 0.0) -> None:
        """Add ``latency_ms`` (+/- ``jitter_ms``, seeded) to every provider answer."""
        if latency_ms < 0 or jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms cannot be negative")
        self.state.settings.latency_ms, self.state.settings.jitter_ms = latency_ms, jitter_ms

    def set_faults(self, rates: dict[str, float], seed: int | None = None) -> None:
        """Set per-request fault probabilities, e.g. ``{"error": 0.1}``; kinds: see FAULT_KINDS."""
        self.state.faults.set_rates(rates, seed)


@contextmanager
def run_emulator(
    config: EmulatorConfig | None = None,
    *,
    port: int = 0,
    host: str = LOOPBACK,
    clock: Callable[[], float] | None = None,
) -> Iterator[EmulatorHandle]:
    """Serve a fresh emulator on ``host:port`` (a free port by default) in a background thread.

    Example:
        ```python
        with run_emulator() as emulator:
            credentials = VoiceflowCredentials(api_key="VF.DM.x.y", base_url=emulator.url)
        ```
    """
    app = create_app(config, clock=clock)
    sock = bind(port, host)
    server = uvicorn.Server(uvicorn_config(app))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="prefect-sessions-emulator", daemon=True
    )
    thread.start()
    try:
        yield EmulatorHandle(f"http://{host}:{sock.getsockname()[1]}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


__all__ = ["EmulatorHandle", "bind", "run_emulator", "uvicorn_config"]
