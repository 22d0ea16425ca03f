"""Pacing before sending: one limiter per (base URL, credential), shared by the whole process.

Retries cannot raise throughput above the provider's limit; they only add waste. The lever is to
space requests so the limit is never hit (`reference/retries.md`, section 2). A :class:`Pacer`
spaces grants evenly at a rate it is given, learns from a published quota, or finds the limit
from the answers alone when nothing is published:

- until the first answer arrives, only one request (the probe) is in flight, so a burst of
  concurrent conversations cannot overrun a limit nobody has told us yet;
- a published quota (``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``) wins: the window is the
  longest reset seen, the rate ``safety * limit / window``, and no more requests go out in a
  window than its ``Remaining`` allows, counting those still in flight (so the first answer
  arriving mid-window cannot start a burst);
- with no quota published, :mod:`prefect_sessions.http.learning` finds a rate limit or a limit
  on requests in flight from the 429s and the successes around them, starting slowly (a cap on
  requests in flight that doubles per round trip) and probing upward so a raised limit is found;
- after a 429, the probe that looks for the limit's end waits until the last second holds no
  more requests than the learned rate allows (a sliding log of sends), counting those sent
  before the rate was lowered: a fixed window that a burst filled keeps refusing until it ends,
  and a probe sent into it only collects another 429;
- a 429's ``Retry-After`` pauses the whole key for as long as it surely means (the hint less its
  resolution: a whole-second value may be rounded up);
- ``max_share`` keeps a run to a share of whatever limit is in force, leaving the rest of the
  key's capacity to production traffic.

Prefect runs async tasks sent with ``.submit``/``.map`` each on a new event loop in its own thread,
so the pacer keeps its state under a ``threading.Lock`` and only ever sleeps on the caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from prefect_sessions.http.hints import RateLimitInfo, rate_limit_info
from prefect_sessions.http.learning import (
    HORIZON_SECONDS,
    ConcurrencyEstimate,
    RateEstimate,
    rate_limit_evident,
)

# How far apart two answers' window ends may be and still speak of the same window.
_SAME_WINDOW_SECONDS = 0.05
#: After a 429 the first probe goes one interval later; while probes are refused the wait is
#: this, then doubled, up to the longest. A full window refuses everything until it ends, so probing
#: faster only collects more 429s.
FIRST_PROBE_BACKOFF = 0.3
MAX_PROBE_BACKOFF = 8.0


@dataclass
class Grant:
    """One permission to send. ``probe`` marks the request that discovers the server's limits.

    Attributes:
        rate: the rate in force when it was granted (``None``: unpaced).
        sent_at: when it left (the pacer's clock).
        in_flight: requests in flight when it left, itself included.
    """

    probe: bool
    observed: bool = False
    rate: float | None = None
    epoch: int = 0
    sent_seq: int = 0
    sent_at: float = 0.0
    in_flight: int = 0
    holding: bool = True
    sending: bool = False


class Pacer:
    """An async rate limiter that any thread and event loop can share.

    Args:
        rate: requests per second to stay under, if known. Learned limits can only lower it.
        safety: share of a published limit to use, leaving room for clock skew and other clients.
        max_share: share of the key's limit this pacer may use (``0 < share <= 1``); below 1 the
            learned limits also stop probing past what was last refused.
        clock: monotonic seconds (injectable for tests, with ``sleep``).
        sleep: the coroutine that waits for a grant's time.
    """

    def __init__(
        self,
        rate: float | None = None,
        *,
        safety: float = 0.95,
        max_share: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError("rate must be a positive number of requests per second, or None")
        if not 0 < max_share <= 1:
            raise ValueError("max_share must lie in (0, 1]: the share of the key's limit to use")
        self._configured_rate = rate
        self._published_rate: float | None = None
        self._window_seconds = 0.0
        self._safety = safety
        self._share = max_share
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._hold_until = 0.0
        self._discovered = rate is not None
        self._probe_in_flight = False
        # After a 429 that a rate limit explains, one request at a time probes (backing off while
        # it is refused) until one gets through: a full fixed window refuses everything until it
        # ends, whatever the rate, and only a success shows that it has.
        self._recovering_since: float | None = None
        self._probe_backoff = 0.0
        # Bumped when the schedule changes (a lower rate, a pause): slots reserved before it are
        # taken again under the new schedule rather than used at the old spacing.
        self._epoch = 0
        self._last_sent = float("-inf")
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._learned_rate = RateEstimate(probe=max_share >= 1)
        self._concurrency = ConcurrencyEstimate()
        if max_share < 1:
            self._concurrency.hold_at_ceiling()
        self._holding = 0
        self._sending = 0
        # The published window: when it ends and how many more grants it allows.
        self._window_end = -math.inf
        self._window_left = 0
        self._window_limit: int | None = None
        self._sent_total = 0
        # When the requests of the last HORIZON_SECONDS left (for the learned rate's log).
        self._sent_log: deque[float] = deque()

    @property
    def rate(self) -> float | None:
        """The rate in force, in requests per second; ``None`` while unpaced."""
        with self._lock:
            return self._rate(self._clock())

    @property
    def max_in_flight(self) -> int | None:
        """The cap on requests in flight in force; ``None`` while there is none."""
        with self._lock:
            return self._cap()

    @property
    def published(self) -> bool:
        """Whether the server has published its quota (then it wins over anything learned)."""
        return self._published_rate is not None

    def _limit_rate(self, now: float) -> float | None:
        """The key's limit as best known: configured, published, or else learned."""
        rates = [r for r in (self._configured_rate, self._published_rate) if r is not None]
        if self._published_rate is None:
            learned = self._learned(now)
            if learned is not None:
                rates.append(learned)
        return min(rates) if rates else None

    def _learned(self, now: float) -> float | None:
        """The rate learned from 429s (a hook: the Redis pacer reads the shared one)."""
        return self._learned_rate.rate(now)

    def _rate(self, now: float) -> float | None:
        limit = self._limit_rate(now)
        return None if limit is None else limit * self._share

    def _cap(self) -> int | None:
        cap = self._concurrency.cap
        return None if cap is None else max(1, math.floor(cap * self._share))

    def _reserve(self) -> tuple[Grant | None, float]:
        """Under the lock: a grant and the monotonic time it may be used at, or no grant."""
        now = self._clock()
        if not self._discovered or self._recovering_since is not None:
            if self._probe_in_flight:
                return None, 0.0
            self._probe_in_flight = True
            at = max(now, self._hold_until)
            rate = self._rate(now)
            if rate:  # a probe keeps to the schedule too, and the next grant one interval after
                at = max(at, self._next_slot)
                self._next_slot = at + 1.0 / rate
            return self._grant(True, at, rate), at
        cap = self._cap()
        if cap is not None and self._holding >= cap:
            self._concurrency.reached(now)
            return None, 0.0
        at = max(now, self._next_slot, self._hold_until)
        rate = self._rate(now)
        self._next_slot = at + (1.0 / rate if rate else 0.0)
        return self._grant(False, at, rate), at

    def _grant(self, probe: bool, at: float, rate: float | None) -> Grant:
        self._holding += 1
        return Grant(probe=probe, rate=rate, epoch=self._epoch)

    def _reschedule(self, now: float) -> None:
        """The schedule changed: slots reserved under the old one are taken again."""
        self._epoch += 1
        rate = self._rate(now)
        self._next_slot = self._last_sent + (1.0 / rate if rate else 0.0)

    def _window_wait(self, now: float) -> float:
        """Under the lock, as a request is about to leave: how long it must wait for a published
        window to have room (0: send now, and it is counted)."""
        if self._window_limit is None:
            return 0.0
        if now >= self._window_end:
            # A new window: those still in flight may land in it and count against it.
            self._window_left = self._window_limit - self._sending
            self._window_end = now + self._window_seconds
        if self._window_left <= 0:
            return self._window_end - now
        self._window_left -= 1
        return 0.0

    def _log_wait(self, now: float, grant: Grant) -> float:
        """Under the lock, as a request is about to leave: how long a probe after a 429 must
        wait so that the last ``HORIZON_SECONDS`` hold no more requests than the learned rate
        allows, counting those sent before it was lowered (0: now). Only the probe waits: the
        requests after it are spaced at the rate, and a pause for them would make the next
        second's measure of the limit count the pause instead."""
        log = self._sent_log
        while log and log[0] <= now - HORIZON_SECONDS:
            log.popleft()
        if not grant.probe or self._recovering_since is None:
            return 0.0
        if self._published_rate is not None or self._configured_rate is not None:
            return 0.0  # a published or given rate is exact: its even spacing is enough
        rate = self._rate(now)
        if rate is None:
            return 0.0
        allowed = max(1, math.ceil(rate * HORIZON_SECONDS))
        if len(log) < allowed:
            return 0.0
        return log[len(log) - allowed] + HORIZON_SECONDS - now

    async def acquire(self) -> Grant:
        """Wait for a turn to send; return the grant to hand back to :meth:`observe`."""
        grant = await self._acquire_local()
        try:
            await self._wait_shared(grant)
            while True:
                with self._lock:
                    current = self._clock()
                    wait = self._log_wait(current, grant) or self._window_wait(current)
                    if wait <= 0:
                        if grant.probe:  # it may have left late: the next one interval after
                            rate = self._rate(current)
                            if rate:
                                self._next_slot = max(self._next_slot, current + 1.0 / rate)
                        self._sent_log.append(current)
                        self._sending += 1
                        self._sent_total += 1
                        grant.sending = True
                        grant.in_flight = self._sending
                        grant.sent_seq = self._sent_total
                        grant.sent_at = self._last_sent = self._clock()
                        return grant
                await self._sleep(wait)
        except BaseException:
            self.abandon(grant)
            raise

    async def _acquire_local(self) -> Grant:
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
                    try:
                        await self._sleep(delay)
                    except BaseException:
                        self.abandon(grant)
                        raise
                    with self._lock:
                        stale = grant.epoch != self._epoch and not grant.probe
                        if stale:
                            self._release(grant)
                    if stale:
                        continue
                return grant
            try:
                await waiter
            finally:
                with self._lock:
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))

    async def _wait_shared(self, grant: Grant) -> None:
        """A hook for pacers that also wait on a schedule shared with other processes."""

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            # A closed loop raises RuntimeError: its task is gone and needs no wake-up.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, waiter)

    def _release(self, grant: Grant) -> None:
        if grant.holding:
            grant.holding = False
            self._holding -= 1
        if grant.sending:
            grant.sending = False
            self._sending -= 1
        if self._waiters:
            self._wake_all()

    def observe(
        self,
        grant: Grant,
        *,
        status: int,
        headers: Mapping[str, str],
        retry_after: float | None = None,
        retry_after_resolution: float = 0.0,
        now: datetime | None = None,
    ) -> None:
        """Learn from a response: its published quota, a 429's request to pause, and (when
        nothing is published) what its acceptance or refusal says about the limit."""
        grant.observed = True
        info = rate_limit_info(headers, now or datetime.now(timezone.utc))
        with self._lock:
            current = self._clock()
            if info is not None and info.reset_seconds is not None:
                self._learn_published(grant, info, current)
            if self._published_rate is None:
                self._learned_rate.answered(
                    current, accepted=status != 429, rate_at_send=grant.rate
                )
            if status == 429:
                if retry_after is not None:
                    # A whole-second hint may be rounded up: only its lower bound is certain,
                    # and the refused request itself still waits the whole hint before retrying.
                    surely = max(0.0, retry_after - retry_after_resolution)
                    if current + surely > self._hold_until:
                        self._hold_until = current + surely
                        self._reschedule(current)
                if self._published_rate is None:
                    self._learn_refused(grant, current)
            else:
                if self._published_rate is None:
                    self._concurrency.accepted(current, grant.in_flight)
                recovering = self._recovering_since
                if recovering is not None and grant.sent_at >= recovering:
                    self._recovering_since = None
                    self._climb_from(current)
                    self._wake_all()
            if grant.probe:
                self._probe_in_flight = False
                if not self._discovered:
                    self._discovered = True
                    if self._published_rate is None and self._configured_rate is None:
                        self._concurrency.start(current)
            self._release(grant)
            if grant.probe:
                self._wake_all()

    def _learn_published(self, grant: Grant, info: RateLimitInfo, current: float) -> None:
        reset_seconds = info.reset_seconds or 0.0
        if info.limit is not None and reset_seconds > 0:
            self._window_seconds = max(self._window_seconds, reset_seconds)
            learned = self._safety * info.limit / self._window_seconds
            if learned > 0 and learned != self._published_rate:
                slower = self._published_rate is None or learned < self._published_rate
                self._published_rate = learned
                self._recovering_since = None  # a published quota wins over anything learned
                if slower:
                    self._reschedule(current)
            self._window_limit = info.limit
        if info.remaining is None:
            return
        # What this answer's window still allows, less what left after this request (the server
        # may not have counted those yet).
        window_end = current + reset_seconds
        left = info.remaining - (self._sent_total - grant.sent_seq)
        if window_end > self._window_end + _SAME_WINDOW_SECONDS:
            self._window_end, self._window_left = window_end, left
        elif window_end >= self._window_end - _SAME_WINDOW_SECONDS:
            self._window_left = min(self._window_left, left)
        if self._window_limit is None and info.remaining <= 0:
            self._hold_until = max(self._hold_until, window_end)

    def _learn_refused(self, grant: Grant, current: float) -> None:
        recovering = self._recovering_since
        if recovering is not None and grant.sent_at < recovering and not grant.probe:
            return  # sent before the rate was lowered: part of the overshoot already answered
        if self._refused_for_concurrency(grant, current):
            return
        if self._recovering_since is not None:
            if grant.probe:
                # Still refused: the window is still full. Wait longer before the next probe.
                backoff = max(FIRST_PROBE_BACKOFF, 2 * self._probe_backoff)
                self._probe_backoff = min(MAX_PROBE_BACKOFF, backoff)
                self._hold_until = max(self._hold_until, current + self._probe_backoff)
            return
        if self._learned_rate.refused(current, sent_at=grant.sent_at, rate_at_send=grant.rate):
            self._recovering_since = current
            self._probe_backoff = 0.0  # the first probe goes one interval later
            self._reschedule(current)

    def _refused_for_concurrency(self, grant: Grant, current: float) -> bool:
        """Whether a 429 speaks for a limit on requests in flight (then the cap has learned it).
        A second that plainly shows a rate limit speaks for the rate whatever was in flight."""
        if rate_limit_evident(self._learned_rate.measured(current), grant.rate):
            return False
        if not self._concurrency.explains(current, grant.in_flight):
            return False
        self._concurrency.refused(current, grant.in_flight)
        return True

    def _climb_from(self, now: float) -> None:
        """The key lets requests through again after a 429: the learned rate climbs from now."""
        self._learned_rate.climb_from(now)

    def abandon(self, grant: Grant) -> None:
        """The granted request got no response: free its place (and let another request probe
        in its place if it was the probe)."""
        if grant.observed:
            return
        with self._lock:
            if grant.probe:
                self._probe_in_flight = False
            self._release(grant)
            if grant.probe:
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

    def lower_share(self, share: float) -> None:
        """Use at most ``share`` of the key's limit (a share only ever lowers)."""
        if not 0 < share <= 1:
            raise ValueError("max_share must lie in (0, 1]: the share of the key's limit to use")
        with self._lock:
            self._share = min(self._share, share)
            if self._share < 1:
                self._learned_rate.hold_at_ceiling()
                self._concurrency.hold_at_ceiling()

    @property
    def max_share(self) -> float:
        """The share of the key's limit this pacer uses."""
        return self._share

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


def credential_fingerprint(secret: str) -> str:
    """A stable, non-reversible name for a credential, fit for a dictionary key or a log line."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]
