"""A published quota window: how much a server says is left of its limit, and until when.

One part of a :class:`~prefect_sessions.http.pacing.Pacer`. A server that publishes
``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` says exactly what it allows: the window is
the longest reset seen, the rate ``safety * limit / window``, and no more leave in a window than
its ``Remaining`` allows, counting those still in flight (so the first answer arriving
mid-window cannot start a burst). The unit is the quota's: requests (each costs 1), or tokens for
a model endpoint that publishes a token budget too.
"""

from __future__ import annotations

import math

#: How far apart two answers' window ends may be and still speak of the same window.
SAME_WINDOW_SECONDS = 0.05


class QuotaWindow:
    """What the server published of one quota, and what is left of its current window."""

    def __init__(self, *, safety: float = 0.95) -> None:
        self._safety = safety
        #: The rate the quota allows (units per second, at ``safety``); None until published.
        self.rate: float | None = None
        self.seconds = 0.0
        self.limit: int | None = None
        self.end = -math.inf
        self.left = 0

    def learn(
        self,
        now: float,
        *,
        limit: int | None,
        remaining: int | None,
        reset_seconds: float | None,
        spent_since: int,
    ) -> tuple[bool, float | None]:
        """An answer's published quota, ``spent_since`` being what left after the answered
        request (the server may not have counted it yet).

        Returns:
            Whether the rate is now lower than it was, and the end of an exhausted window to
            pause until when no limit is known (else ``None``).
        """
        reset = reset_seconds or 0.0
        slower = False
        if limit is not None and reset > 0:
            self.seconds = max(self.seconds, reset)
            learned = self._safety * limit / self.seconds
            if learned > 0 and learned != self.rate:
                slower = self.rate is None or learned < self.rate
                self.rate = learned
            self.limit = limit
        if remaining is None:
            return slower, None
        end = now + reset
        left = remaining - spent_since
        if end > self.end + SAME_WINDOW_SECONDS:
            self.end, self.left = end, left
        elif end >= self.end - SAME_WINDOW_SECONDS:
            self.left = min(self.left, left)
        pause = end if self.limit is None and remaining <= 0 else None
        return slower, pause

    def wait(self, now: float, *, in_flight: int, cost: int = 1) -> float:
        """As a request is about to leave: how long it must wait for the window to have room
        (0: send now, and its ``cost`` is counted)."""
        if self.limit is None:
            return 0.0
        if now >= self.end:
            # A new window: those still in flight may land in it and count against it.
            self.left = self.limit - in_flight
            self.end = now + self.seconds
        if self.left <= 0:
            return self.end - now
        self.left -= cost
        return 0.0
