"""Requests in flight, and the waiters to wake when a place frees: across threads and loops.

One part of a :class:`~prefect_sessions.http.pacing.Pacer` (which holds the lock around it).
``holding`` counts grants from reservation to release (what a cap on requests in flight limits);
``sending`` counts those that left and have no answer yet (what lands in a published window).
Prefect runs async tasks sent with ``.submit``/``.map`` each on a new event loop in its own
thread, so a waiter is woken on its own loop, thread-safely.
"""

from __future__ import annotations

import asyncio
import contextlib


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class InFlight:
    """Counts of requests held and sent, and who waits for a place."""

    def __init__(self) -> None:
        self.holding = 0
        self.sending = 0
        self.sent_total = 0
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def wait_for_place(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]:
        """A waiter on the running loop, woken by :meth:`wake_all`."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters.append((loop, waiter))
        return loop, waiter

    def forget(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> None:
        if (loop, waiter) in self.waiters:
            self.waiters.remove((loop, waiter))

    def wake_all(self) -> None:
        waiters, self.waiters = self.waiters, []
        for loop, waiter in waiters:
            # A closed loop raises RuntimeError: its task is gone and needs no wake-up.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, waiter)
