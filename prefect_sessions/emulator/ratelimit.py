"""Rate limiting the way providers do it, in each shape they have.

- ``fixed``: Voiceflow's runtime (``rate-limiter-flexible`` behind its ``RateLimitMiddleware``)
  opens a window at a bucket's first request and counts the requests it lets through; a refused
  request neither counts nor extends the window. LiveAvatar does the same over 1 second per caller
  and endpoint.
- ``sliding``: a log of the accepted requests of the last window; one more is refused until the
  oldest leaves it.
- ``bucket``: a token bucket of ``burst`` tokens refilled at ``limit`` per window.
- ``inflight``: at most ``limit`` requests at once (Vectara's "too many concurrent requests");
  taken with :meth:`Limiter.enter` and given back with :meth:`Limiter.leave`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timezone

from prefect_sessions.emulator.config import RateLimit


@dataclass(frozen=True)
class Decision:
    """The outcome of one request against its bucket."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when a refused request would be allowed (or the window ends)
    now: float

    @property
    def seconds_to_reset(self) -> float:
        return max(0.0, self.reset_at - self.now)

    @property
    def retry_after_floor(self) -> int:
        """Whole seconds, floored as Voiceflow's runtime sends them (so it can be 0)."""
        return math.floor(self.seconds_to_reset)

    @property
    def retry_after_ceil(self) -> int:
        """Whole seconds, rounded up: a client that waits this long is certainly allowed."""
        return math.ceil(self.seconds_to_reset)

    @property
    def reset_iso(self) -> str:
        moment = datetime.fromtimestamp(self.reset_at, timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Limiter:
    """Buckets of every counting; thread-safe so a test thread may read or reset it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[Hashable, tuple[float, int]] = {}
        self._logs: dict[Hashable, deque[float]] = {}
        self._tokens: dict[Hashable, tuple[float, float]] = {}
        self._in_flight: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def take(self, bucket: Hashable, limit: RateLimit) -> Decision:
        """Count one request against ``bucket``; refused when the limit is already reached.

        For ``inflight`` limits an allowed request holds its place until :meth:`leave`.
        """
        with self._lock:
            now = self._clock()
            if limit.counting == "sliding":
                return self._sliding(bucket, limit, now)
            if limit.counting == "bucket":
                return self._bucket(bucket, limit, now)
            if limit.counting == "inflight":
                count = self._in_flight.get(bucket, 0)
                allowed = count < limit.limit
                if allowed:
                    count += 1
                    self._in_flight[bucket] = count
                return Decision(allowed, limit.limit, max(0, limit.limit - count), now, now)
            return self._fixed(bucket, limit, now)

    def leave(self, bucket: Hashable) -> None:
        """An ``inflight`` request allowed by :meth:`take` has been answered."""
        with self._lock:
            count = self._in_flight.get(bucket, 0) - 1
            if count > 0:
                self._in_flight[bucket] = count
            else:
                self._in_flight.pop(bucket, None)

    def _fixed(self, bucket: Hashable, limit: RateLimit, now: float) -> Decision:
        start, count = self._windows.get(bucket, (now, 0))
        if now >= start + limit.window_seconds:
            start, count = now, 0
        allowed = count < limit.limit
        if allowed:
            count += 1
        self._windows[bucket] = (start, count)
        return Decision(
            allowed, limit.limit, max(0, limit.limit - count), start + limit.window_seconds, now
        )

    def _sliding(self, bucket: Hashable, limit: RateLimit, now: float) -> Decision:
        log = self._logs.setdefault(bucket, deque())
        while log and log[0] <= now - limit.window_seconds:
            log.popleft()
        allowed = len(log) < limit.limit
        if allowed:
            log.append(now)
        # A refused request may come back when the oldest accepted one leaves the window.
        reset_at = log[0] + limit.window_seconds if log else now
        return Decision(allowed, limit.limit, max(0, limit.limit - len(log)), reset_at, now)

    def _bucket(self, bucket: Hashable, limit: RateLimit, now: float) -> Decision:
        refill = limit.limit / limit.window_seconds
        tokens, last = self._tokens.get(bucket, (float(limit.capacity), now))
        tokens = min(float(limit.capacity), tokens + (now - last) * refill)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._tokens[bucket] = (tokens, now)
        reset_at = now + max(0.0, 1.0 - tokens) / refill
        return Decision(allowed, limit.capacity, math.floor(tokens), reset_at, now)

    def reset(self) -> None:
        """Forget every window, log and bucket (requests in flight keep their places)."""
        with self._lock:
            self._windows.clear()
            self._logs.clear()
            self._tokens.clear()
