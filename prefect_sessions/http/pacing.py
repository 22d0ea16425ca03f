"""Pacing before sending: one limiter per (base URL, credential), shared by the whole process.

Retries cannot raise throughput above the provider's limit; they only add waste. The lever is to
space requests so the limit is never hit (`reference/retries.md`, section 2). A :class:`Pacer`
spaces grants evenly at a rate it is given, or that it learns from ``X-RateLimit-Limit``,
``-Remaining`` and ``-Reset``:

- until the first answer arrives, only one request (the probe) is in flight, so a burst of
  concurrent conversations cannot overrun a limit nobody has told us yet;
- the window length is the longest reset time seen; the rate is ``safety * limit / window``;
- ``Remaining: 0`` holds every request until the window resets;
- a 429 with a hint pauses the whole key for that long.

Prefect runs async tasks sent with ``.submit``/``.map`` each on a new event loop in its own thread,
so the pacer keeps its state under a ``threading.Lock`` and only ever sleeps on the caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from prefect_sessions.http.hints import rate_limit_info


@dataclass
class Grant:
    """One permission to send. ``probe`` marks the request that discovers the server's limits."""

    probe: bool
    observed: bool = False


class Pacer:
    """An async rate limiter that any thread and event loop can share.

    Args:
        rate: requests per second to stay under, if known. Learned limits can only lower it.
        safety: share of a learned limit to use, leaving room for clock skew and other clients.
        clock: monotonic seconds (injectable for tests, with ``sleep``).
        sleep: the coroutine that waits for a grant's time.
    """

    def __init__(
        self,
        rate: float | None = None,
        *,
        safety: float = 0.95,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError("rate must be a positive number of requests per second, or None")
        self._configured_rate = rate
        self._learned_rate: float | None = None
        self._window_seconds = 0.0
        self._safety = safety
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._last_grant = float("-inf")
        self._hold_until = 0.0
        self._discovered = rate is not None
        self._probe_in_flight = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def rate(self) -> float | None:
        """The rate in force, in requests per second; ``None`` while unpaced."""
        with self._lock:
            return self._rate()

    def _rate(self) -> float | None:
        rates = [r for r in (self._configured_rate, self._learned_rate) if r is not None]
        return min(rates) if rates else None

    def _reserve(self) -> tuple[Grant | None, float]:
        """Under the lock: a grant and the monotonic time it may be used at, or no grant."""
        if not self._discovered:
            if self._probe_in_flight:
                return None, 0.0
            self._probe_in_flight = True
            at = max(self._clock(), self._hold_until)
            self._last_grant = at
            return Grant(probe=True), at
        at = max(self._clock(), self._next_slot, self._hold_until)
        rate = self._rate()
        self._next_slot = at + (1.0 / rate if rate else 0.0)
        self._last_grant = at
        return Grant(probe=False), at

    async def acquire(self) -> Grant:
        """Wait for a turn to send; return the grant to hand back to :meth:`observe`."""
        while True:
            with self._lock:
                grant, at = self._reserve()
                if grant is None:
                    loop = asyncio.get_running_loop()
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._waiters.append((loop, waiter))
            if grant is not None:
                delay = at - self._clock()
                if delay > 0:
                    await self._sleep(delay)
                return grant
            try:
                await waiter
            finally:
                with self._lock:
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            # A closed loop raises RuntimeError: its task is gone and needs no wake-up.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, waiter)

    def observe(
        self,
        grant: Grant,
        *,
        status: int,
        headers: Mapping[str, str],
        retry_after: float | None = None,
        now: datetime | None = None,
    ) -> None:
        """Learn from a response: its published quota, and a 429's request to pause."""
        grant.observed = True
        info = rate_limit_info(headers, now or datetime.now(timezone.utc))
        with self._lock:
            current = self._clock()
            if info is not None and info.reset_seconds is not None:
                reset_at = current + info.reset_seconds
                if info.limit is not None and info.reset_seconds > 0:
                    self._window_seconds = max(self._window_seconds, info.reset_seconds)
                    learned = self._safety * info.limit / self._window_seconds
                    if learned > 0 and learned != self._learned_rate:
                        self._learned_rate = learned
                        # The spacing changed: the next grant is one new interval after the last.
                        self._next_slot = max(self._next_slot, self._last_grant + 1.0 / learned)
                if info.remaining is not None and info.remaining <= 0:
                    self._hold_until = max(self._hold_until, reset_at)
            if status == 429 and retry_after is not None:
                self._hold_until = max(self._hold_until, current + retry_after)
            if grant.probe:
                self._probe_in_flight = False
                self._discovered = True
                self._wake_all()

    def abandon(self, grant: Grant) -> None:
        """The granted request got no response: let another request probe in its place."""
        if grant.observed or not grant.probe:
            return
        with self._lock:
            self._probe_in_flight = False
            self._wake_all()

    def lower_configured_rate(self, rate: float) -> None:
        """Cap the rate at ``rate`` requests per second (a configured rate only ever lowers it)."""
        if not rate > 0:
            raise ValueError("rate must be a positive number of requests per second")
        with self._lock:
            current = self._configured_rate
            self._configured_rate = rate if current is None else min(current, rate)
            self._discovered = True
            self._wake_all()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Grant]:
        """``async with pacer.slot() as grant:`` send, then :meth:`observe` the response."""
        grant = await self.acquire()
        try:
            yield grant
        finally:
            self.abandon(grant)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_registry: dict[tuple[str, str], Pacer] = {}
_registry_lock = threading.Lock()

#: Builds the pacer of a (base URL, credential fingerprint, configured rate) on first use.
PacerFactory = Callable[[str, str, "float | None"], Pacer]
_factory: PacerFactory | None = None


def set_pacer_factory(factory: PacerFactory | None) -> None:
    """Build the process's shared pacers with ``factory`` from now on (``None``: the in-process
    :class:`Pacer`, or a Redis-backed one when ``PREFECT_SESSIONS_REDIS_URL`` is set; see
    :mod:`prefect_sessions.http.shared_pacing`). Pacers already built are forgotten."""
    global _factory
    with _registry_lock:
        _factory = factory
        _registry.clear()


def _default_pacer(base_url: str, fingerprint: str, rate: float | None) -> Pacer:
    url = os.environ.get("PREFECT_SESSIONS_REDIS_URL")
    if url:
        from prefect_sessions.http.shared_pacing import redis_pacer_factory

        return redis_pacer_factory(url)(base_url, fingerprint, rate)
    return Pacer(rate)


def credential_fingerprint(secret: str) -> str:
    """A stable, non-reversible name for a credential, fit for a dictionary key or a log line."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]


def shared_pacer(base_url: str, fingerprint: str, rate: float | None = None) -> Pacer:
    """The process-wide pacer of one (base URL, credential); created on first use.

    A configured ``rate`` given later can only lower the pacer's rate, never raise it, so two
    blocks with the same key and different settings stay under the stricter one.
    """
    key = (base_url.rstrip("/"), fingerprint)
    with _registry_lock:
        pacer = _registry.get(key)
        if pacer is None:
            pacer = _registry[key] = (_factory or _default_pacer)(key[0], fingerprint, rate)
        elif rate is not None:
            pacer.lower_configured_rate(rate)
        return pacer


def reset_shared_pacers() -> None:
    """Forget every shared pacer (tests, or after changing a provider's plan)."""
    with _registry_lock:
        _registry.clear()
