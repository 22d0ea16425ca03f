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
  key's capacity to production traffic;
- quotas published OpenAI's way (``x-ratelimit-*-requests`` and ``-tokens``, refilled
  continuously) are mirrored as buckets, and a request leaves only when each holds its cost: one
  request, and the tokens its caller estimates (a model endpoint's two budgets).

The pacer is composed of small parts, each its own object with its own tests, as botocore's
adaptive mode composes ``TokenBucket``, ``CubicCalculator`` and ``RateClocker``:

- :class:`~prefect_sessions.http.schedule.Schedule`: even spacing at the rate, and pauses;
- :class:`~prefect_sessions.http.quota_window.QuotaWindow`: a published quota's window;
- :class:`~prefect_sessions.http.refill_quota.RefillingQuota`: a quota refilled continuously
  (requests and tokens per minute);
- :class:`~prefect_sessions.http.recovery.Recovery`: the probe at the start and after a 429;
- :class:`~prefect_sessions.http.learning.RateEstimate` and
  :class:`~prefect_sessions.http.learning.ConcurrencyEstimate`: limits learned from 429s;
- :class:`~prefect_sessions.http.in_flight.InFlight`: requests in flight and their waiters.

Prefect runs async tasks sent with ``.submit``/``.map`` each on a new event loop in its own thread,
so the pacer keeps its parts under one ``threading.Lock`` and only ever sleeps on the caller's loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from prefect_sessions.http.hints import RateLimitInfo, quota_info, rate_limit_info
from prefect_sessions.http.in_flight import InFlight
from prefect_sessions.http.learning import ConcurrencyEstimate, RateEstimate, rate_limit_evident
from prefect_sessions.http.quota_window import QuotaWindow
from prefect_sessions.http.recovery import Recovery
from prefect_sessions.http.refill_quota import RefillingQuota
from prefect_sessions.http.schedule import Schedule


@dataclass
class Grant:
    """One permission to send. ``probe`` marks the request that discovers the server's limits.

    Attributes:
        rate: the rate in force when it was granted (``None``: unpaced).
        sent_at: when it left (the pacer's clock).
        in_flight: requests in flight when it left, itself included.
        tokens: the tokens the request is estimated to cost (a model endpoint's token quota).
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
    tokens: float = 0.0
    tokens_sent_before: float = 0.0


#: The quotas a server may publish OpenAI's way, each refilled continuously.
REFILLING_UNITS = ("requests", "tokens")


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
        self._share = max_share
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._schedule = Schedule()
        self._window = QuotaWindow(safety=safety)
        self._recovery = Recovery(discovered=rate is not None)
        self._in_flight = InFlight()
        self._learned_rate = RateEstimate(probe=max_share >= 1)
        self._concurrency = ConcurrencyEstimate()
        if max_share < 1:
            self._concurrency.hold_at_ceiling()
        self._refilling = {unit: RefillingQuota(safety=safety) for unit in REFILLING_UNITS}
        self._tokens_sent = 0.0

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
        # A refilling quota gives no rate to space requests at: its bucket may be spent at once
        # (_departure_wait keeps to it).
        refilling = any(quota.rate is not None for quota in self._refilling.values())
        return self._window.rate is not None or refilling

    def _limit_rate(self, now: float) -> float | None:
        """The key's limit as best known: configured, published, or else learned."""
        published = self._window.rate
        rates = [r for r in (self._configured_rate, published) if r is not None]
        if not self.published:
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
        if self._recovery.probing:
            if not self._recovery.take_probe():
                return None, 0.0
            rate = self._rate(now)
            return self._grant(True, rate), self._schedule.take_for_probe(now, rate)
        cap = self._cap()
        if cap is not None and self._in_flight.holding >= cap:
            self._concurrency.reached(now)
            return None, 0.0
        rate = self._rate(now)
        at = self._schedule.take(now, rate)
        return self._grant(False, rate), at

    def _grant(self, probe: bool, rate: float | None) -> Grant:
        self._in_flight.holding += 1
        return Grant(probe=probe, rate=rate, epoch=self._schedule.epoch)

    def _reschedule(self, now: float) -> None:
        """The schedule changed: slots reserved under the old one are taken again."""
        self._schedule.restart(self._rate(now))

    def _departure_wait(self, now: float, grant: Grant) -> float:
        """Under the lock, as a request is about to leave: how long it must still wait (for the
        recovering probe's send log, then for a published window's room); 0 counts it sent."""
        exact = self.published or self._configured_rate is not None
        rate = self._rate(now) if grant.probe else None
        wait = self._recovery.log_wait(now, probe=grant.probe, rate=rate, exact=exact)
        if wait:
            return wait
        costs = {"requests": 1.0, "tokens": grant.tokens}
        wait = max(
            quota.wait(now, costs[unit], share=self._share)
            for unit, quota in self._refilling.items()
        )
        if wait:
            return wait
        wait = self._window.wait(now, in_flight=self._in_flight.sending)
        if not wait:
            for unit, quota in self._refilling.items():
                quota.spend(costs[unit])
        return wait

    async def acquire(self, *, tokens: float = 0.0) -> Grant:
        """Wait for a turn to send (and, at an endpoint that publishes a token quota, for room
        for ``tokens``); return the grant to hand back to :meth:`observe`."""
        grant = await self._acquire_local()
        grant.tokens = tokens
        try:
            await self._wait_shared(grant)
            while True:
                with self._lock:
                    current = self._clock()
                    wait = self._departure_wait(current, grant)
                    if wait <= 0:
                        self._depart(grant, current)
                        return grant
                await self._sleep(wait)
        except BaseException:
            self.abandon(grant)
            raise

    def _depart(self, grant: Grant, now: float) -> None:
        """Under the lock: the granted request leaves now."""
        if grant.probe:  # it may have left late: the next one interval after
            self._schedule.left_late(now, self._rate(now))
        self._recovery.sent(now)
        in_flight = self._in_flight
        in_flight.sending += 1
        in_flight.sent_total += 1
        grant.sending = True
        grant.in_flight = in_flight.sending
        grant.sent_seq = in_flight.sent_total
        grant.sent_at = self._schedule.last_sent = self._clock()
        grant.tokens_sent_before = self._tokens_sent
        self._tokens_sent += grant.tokens

    async def _acquire_local(self) -> Grant:
        while True:
            with self._lock:
                grant, at = self._reserve()
                if grant is None:
                    loop, waiter = self._in_flight.wait_for_place()
            if grant is not None:
                delay = at - self._clock()
                if delay > 0:
                    try:
                        await self._sleep(delay)
                    except BaseException:
                        self.abandon(grant)
                        raise
                    with self._lock:
                        stale = grant.epoch != self._schedule.epoch and not grant.probe
                        if stale:
                            self._release(grant)
                    if stale:
                        continue
                return grant
            try:
                await waiter
            finally:
                with self._lock:
                    self._in_flight.forget(loop, waiter)

    async def _wait_shared(self, grant: Grant) -> None:
        """A hook for pacers that also wait on a schedule shared with other processes."""

    def _wake_all(self) -> None:
        self._in_flight.wake_all()

    def _release(self, grant: Grant) -> None:
        in_flight = self._in_flight
        if grant.holding:
            grant.holding = False
            in_flight.holding -= 1
        if grant.sending:
            grant.sending = False
            in_flight.sending -= 1
        if in_flight.waiters:
            in_flight.wake_all()

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
            self._learn_refilling(grant, headers, current)
            learning = not self.published
            if learning:
                self._learned_rate.answered(
                    current, accepted=status != 429, rate_at_send=grant.rate
                )
            if status == 429:
                if retry_after is not None:
                    # A whole-second hint may be rounded up: only its lower bound is certain,
                    # and the refused request itself still waits the whole hint before retrying.
                    surely = max(0.0, retry_after - retry_after_resolution)
                    if self._schedule.hold(current + surely):
                        self._reschedule(current)
                if learning:
                    self._learn_refused(grant, current)
            else:
                if learning:
                    self._concurrency.accepted(current, grant.in_flight)
                if self._recovery.got_through(grant.sent_at):
                    self._climb_from(current)
                    self._wake_all()
            first_answer = grant.probe and self._recovery.probe_answered()
            if first_answer and not self.published and self._configured_rate is None:
                self._concurrency.start(current)
            self._release(grant)
            if grant.probe:
                self._wake_all()

    def _learn_published(self, grant: Grant, info: RateLimitInfo, current: float) -> None:
        slower, pause = self._window.learn(
            current,
            limit=info.limit,
            remaining=info.remaining,
            reset_seconds=info.reset_seconds,
            spent_since=self._in_flight.sent_total - grant.sent_seq,
        )
        if self._window.rate is not None:
            self._recovery.recovering_since = None  # a published quota wins over anything learned
        if slower:
            self._reschedule(current)
        if pause is not None:
            self._schedule.hold(pause)

    def _learn_refilling(self, grant: Grant, headers: Mapping[str, str], current: float) -> None:
        """Quotas published OpenAI's way, each with what was sent after this request."""
        spent_since = {
            "requests": float(self._in_flight.sent_total - grant.sent_seq),
            "tokens": self._tokens_sent - grant.tokens_sent_before - grant.tokens,
        }
        slower = False
        for unit, quota in self._refilling.items():
            info = quota_info(headers, unit)
            if info is None or info.limit is None:
                continue
            slower |= quota.learn(
                current,
                limit=info.limit,
                remaining=info.remaining,
                reset_seconds=info.reset_seconds,
                spent_since=spent_since[unit],
            )
        if any(quota.rate is not None for quota in self._refilling.values()):
            self._recovery.recovering_since = None  # a published quota wins over anything learned
        if slower:
            self._reschedule(current)

    def _learn_refused(self, grant: Grant, current: float) -> None:
        recovery = self._recovery
        if recovery.sent_before_lowering(grant.sent_at) and not grant.probe:
            return  # sent before the rate was lowered: part of the overshoot already answered
        if self._refused_for_concurrency(grant, current):
            return
        if recovery.recovering_since is not None:
            if grant.probe:
                # Still refused: the window is still full. Wait longer before the next probe.
                self._schedule.hold(recovery.probe_refused(current))
            return
        if self._learned_rate.refused(current, sent_at=grant.sent_at, rate_at_send=grant.rate):
            recovery.lowered(current)
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
                self._recovery.probe_in_flight = False
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
            self._recovery.discovered = True
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
    async def slot(self, *, tokens: float = 0.0) -> AsyncIterator[Grant]:
        """``async with pacer.slot() as grant:`` send, then :meth:`observe` the response."""
        grant = await self.acquire(tokens=tokens)
        try:
            yield grant
        finally:
            self.abandon(grant)


def credential_fingerprint(secret: str) -> str:
    """A stable, non-reversible name for a credential, fit for a dictionary key or a log line."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]
