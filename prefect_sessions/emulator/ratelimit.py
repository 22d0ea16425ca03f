"""Fixed-window rate limiting the way the providers do it.

Voiceflow's runtime (``rate-limiter-flexible`` behind its ``RateLimitMiddleware``) opens a window
at a bucket's first request and counts the requests it lets through; a refused request neither
counts nor extends the window. LiveAvatar does the same over 1 second per caller and endpoint.
"""

from __future__ import annotations

import math
import threading
import time
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
    reset_at: float  # epoch seconds when the window ends
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


class FixedWindowLimiter:
    """Buckets of fixed windows; thread-safe so a test thread may read or reset it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[Hashable, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def take(self, bucket: Hashable, limit: RateLimit) -> Decision:
        """Count one request against ``bucket``; refused when the window is already full."""
        with self._lock:
            now = self._clock()
            start, count = self._windows.get(bucket, (now, 0))
            if now >= start + limit.window_seconds:
                start, count = now, 0
            allowed = count < limit.limit
            if allowed:
                count += 1
            self._windows[bucket] = (start, count)
            return Decision(
                allowed=allowed,
                limit=limit.limit,
                remaining=max(0, limit.limit - count),
                reset_at=start + limit.window_seconds,
                now=now,
            )

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
