"""Limits learned from the answers alone, for providers that publish no quota.

Two of the three providers never say how much they allow: Vectara answers a bare 429 ("too many
concurrent requests"), LiveAvatar a ``Retry-After`` and nothing more. A client that only retries
wastes about half its attempts against them (``benchmarks/at_limit``). These estimators find the
limit from which requests were accepted and which were refused, whatever its shape:

- :class:`RateEstimate`: a rate limit (fixed or sliding window, token bucket). After a 429 the
  rate drops to ``beta`` of the rate the limit was met at: the requests accepted over the last
  second when the client sent at its full rate all that second (a fixed window's or a bucket's
  capacity shows as exactly that while it is full), else at most ``beta`` below the rate in
  force. It then climbs back along a cubic (CUBIC, as in botocore's adaptive retry
  mode): flat near the rate that failed, so it dwells just under the limit, and steeper beyond,
  so a raised limit is found within seconds. Before enough has been seen to measure a second,
  the estimate is provisional and grows by half every second instead (slow start).
- :class:`ConcurrencyEstimate`: a limit on requests in flight. A refused request that was sent
  with ``k`` in flight (itself included) while fewer were in flight for every recent success
  shows a limit below ``k``: the cap becomes ``k - 1`` at once, never below the true limit since
  the client counts at least as many in flight as the server. The cap grows back by a quarter
  (at least one) each second it is reached without a refusal (AIMD with slow probing, as Netflix's
  concurrency-limits), and starts at four, growing by one per round trip, so a run begins
  without a burst.

Which of the two a 429 speaks for is decided by :meth:`ConcurrencyEstimate.explains`: refusals
that only come at more requests in flight than any recent success are a concurrency limit;
refusals among successes at the same in-flight level are a rate limit. A second that plainly
shows a rate limit (:func:`rate_limit_evident`) overrides that: at a low rate a request sent with
two in flight is chance, and taking it for a concurrency limit of one would stall the run.

Everything here is pure bookkeeping on an injected clock, so properties can be tested without a
network (``tests/integration/http/test_learning.py``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

#: Share of the rate the limit was met at that is kept after a 429.
BETA = 0.9
#: Seconds for the rate to climb back to where it met the limit (CUBIC's K).
CLIMB_SECONDS = 2.0
#: The span over which accepted requests are counted to measure a rate.
HORIZON_SECONDS = 1.0
#: The slowest rate ever set (requests per second): below it a run would stall, not pace.
MIN_RATE = 0.5
#: Growth per second of a provisional rate (slow start), until the next 429.
SLOW_START_GROWTH = 1.5
#: Sending at this share of the rate in force or more counts as pressing against the limit.
SATURATED = 0.75


@dataclass(frozen=True)
class RateState:
    """What a learned rate is a function of; shared as is through Redis by several processes.

    Attributes:
        ceiling: the rate (requests/s) at which the limit was last met.
        since: when (seconds on the estimate's clock) that was.
        provisional: the ceiling came from less than a full second of answers (slow start).
    """

    ceiling: float
    since: float
    provisional: bool = False

    def rate(self, now: float, *, beta: float = BETA, probe: bool = True) -> float:
        """The rate in force at ``now``; with ``probe=False`` it never climbs past the ceiling."""
        elapsed = max(0.0, now - self.since)
        base = beta * self.ceiling
        if self.provisional:
            rate: float = base * SLOW_START_GROWTH**elapsed
        else:
            scale = (1.0 - beta) / CLIMB_SECONDS**3
            rate = self.ceiling * (1.0 + scale * (elapsed - CLIMB_SECONDS) ** 3)
        if not probe:
            rate = min(rate, self.ceiling)
        return max(MIN_RATE, rate)


@dataclass(frozen=True)
class Measured:
    """What the answers of the last second show.

    Attributes:
        goodput: requests accepted per second.
        sent: requests sent per second (accepted or refused).
        paced: the mean rate in force when they were sent (0 while unpaced).
        whole_second: answers have come for at least a whole second.
    """

    goodput: float
    sent: float
    whole_second: bool
    paced: float = 0.0


class RateEstimate:
    """A rate limit learned from 429s and the successes around them (see the module docs)."""

    def __init__(self, *, beta: float = BETA, probe: bool = True) -> None:
        self.state: RateState | None = None
        self._beta = beta
        self._probe = probe
        self._accepted: deque[float] = deque()
        self._answered: deque[tuple[float, float]] = deque()
        self._first_answer: float | None = None

    def hold_at_ceiling(self) -> None:
        """Never climb past the rate last refused (a run that keeps a share free)."""
        self._probe = False

    def rate(self, now: float) -> float | None:
        """Requests per second to stay under, or ``None`` while no rate limit has shown."""
        return None if self.state is None else self.state.rate(now, probe=self._probe)

    def answered(self, now: float, *, accepted: bool, rate_at_send: float | None) -> None:
        """A request was answered: accepted, or refused with a 429."""
        if self._first_answer is None:
            self._first_answer = now
        self._answered.append((now, rate_at_send or 0.0))
        if accepted:
            self._accepted.append(now)
        self._forget(now)

    def _forget(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - HORIZON_SECONDS:
            self._accepted.popleft()
        while self._answered and self._answered[0][0] <= now - HORIZON_SECONDS:
            self._answered.popleft()

    def measured(self, now: float) -> Measured:
        """What the last second's answers show."""
        self._forget(now)
        seen = self._first_answer is not None and now - self._first_answer >= HORIZON_SECONDS
        answered = len(self._answered)
        return Measured(
            goodput=len(self._accepted) / HORIZON_SECONDS,
            sent=answered / HORIZON_SECONDS,
            whole_second=seen,
            paced=sum(rate for _, rate in self._answered) / answered if answered else 0.0,
        )

    def climb_from(self, now: float) -> None:
        """Start the climb back now: the key has just let a request through again after the
        429, and time spent refused is no evidence that the limit is higher."""
        if self.state is not None:
            self.state = replace(self.state, since=now)

    def refused(self, now: float, *, sent_at: float, rate_at_send: float | None) -> bool:
        """A 429 that a rate limit explains; ``False`` when it was ignored because the request
        left before the last decrease (one overshoot lowers the rate once)."""
        self.state, changed = next_rate_state(
            self.state,
            now,
            sent_at=sent_at,
            rate_at_send=rate_at_send,
            measured=self.measured(now),
            beta=self._beta,
        )
        return changed


def rate_limit_evident(
    measured: Measured, rate_at_send: float | None, *, beta: float = BETA
) -> bool:
    """Whether the last second shows a rate limit by itself: a whole second sent at the rate in
    force, and far less got through. A 429 then speaks for the rate, even when it came at more
    requests in flight than the recent successes had (at a low rate, one or two in flight is
    chance, not a concurrency limit)."""
    return (
        rate_at_send is not None
        and measured.whole_second
        and measured.sent >= SATURATED * measured.paced > 0
        and measured.goodput < beta * rate_at_send - 1.0 / HORIZON_SECONDS
    )


def next_rate_state(
    state: RateState | None,
    now: float,
    *,
    sent_at: float,
    rate_at_send: float | None,
    measured: Measured,
    beta: float = BETA,
) -> tuple[RateState | None, bool]:
    """The state after a 429, and whether it changed (a pure function, so the Redis-shared pacer
    applies the very same rule)."""
    if state is not None and sent_at < state.since:
        return state, False
    goodput = measured.goodput
    if rate_at_send is None:
        if goodput <= 0:
            # Nothing accepted yet to measure (a refused probe): the retry's own wait is all
            # that can be done until something gets through.
            return state, False
        ceiling = goodput
    elif rate_limit_evident(measured, rate_at_send, beta=beta):
        # A whole second sent at the rate in force, and far less got through: that is the limit
        # (a window's or a bucket's capacity, a limit just lowered, or what another client
        # sharing the key leaves), however far the rate had overshot it.
        ceiling = goodput
    else:
        # Just over the limit (a one-second count is one request coarse), or sent
        # below the rate in force (the goodput then undercounts the limit): lower the rate by at
        # most the factor beta.
        ceiling = min(rate_at_send, max(goodput, beta * rate_at_send))
    ceiling = max(MIN_RATE / beta, ceiling)
    return RateState(ceiling=ceiling, since=now, provisional=not measured.whole_second), True


@dataclass
class _Outcome:
    at: float
    in_flight: int


class ConcurrencyEstimate:
    """A cap on requests in flight, learned from 429s (see the module docs).

    Args:
        probe_seconds: how long the cap must be reached without a refusal before it grows.
        memory_seconds: how far back successes count when a 429 is explained.
    """

    def __init__(self, *, probe_seconds: float = 1.0, memory_seconds: float = 2.0) -> None:
        self.cap: int | None = None
        self.slow_start = False
        self._probe_seconds = probe_seconds
        self._memory = memory_seconds
        self._successes: deque[_Outcome] = deque()
        self._last_change = -math.inf
        self._reached_at: float | None = None
        self._probe = True
        self._acks = 0

    def start(self, now: float, *, initial: int = 4) -> None:
        """Begin with a small cap that grows by one per round trip until the first refusal."""
        if self.cap is None:
            self.cap, self.slow_start, self._last_change = initial, True, now

    def hold_at_ceiling(self) -> None:
        """Never grow the cap past where it was refused (a run that keeps a share free)."""
        self._probe = False

    def reached(self, now: float) -> None:
        """Every slot of the cap is in use (only then does a quiet second prove anything)."""
        if self._reached_at is None:
            self._reached_at = now

    def accepted(self, now: float, in_flight: int) -> None:
        """A request sent with ``in_flight`` requests in flight (itself included) succeeded."""
        self._successes.append(_Outcome(now, in_flight))
        self._forget(now)
        if self.cap is None:
            return
        if self.slow_start:
            self._acks += 1
            if self._acks >= self.cap:  # one more place per round trip's worth of successes
                self.cap, self._acks = self.cap + 1, 0
            return
        if (
            self._probe
            and self._reached_at is not None
            and now - max(self._last_change, self._reached_at) >= self._probe_seconds
        ):
            self.cap += max(1, self.cap // 4)
            self._last_change, self._reached_at = now, None

    def explains(self, now: float, in_flight: int) -> bool:
        """Whether a 429 for a request sent with ``in_flight`` in flight shows a concurrency
        limit: it came at more requests in flight than nine in ten recent successes had."""
        if in_flight < 2:
            return False
        self._forget(now)
        levels = sorted(outcome.in_flight for outcome in self._successes)
        # The 90th percentile, so a success counted high (its answer still on the wire while
        # the server had already freed its place) does not hide a concurrency limit.
        typical = levels[(len(levels) * 9) // 10] if len(levels) >= 10 else max(levels, default=1)
        return in_flight > typical

    def refused(self, now: float, in_flight: int) -> None:
        """A 429 that :meth:`explains` attributes to too many requests in flight."""
        new_cap = max(1, in_flight - 1)
        self.cap = new_cap if self.cap is None else min(self.cap, new_cap)
        self.slow_start = False
        self._last_change, self._reached_at = now, None

    def _forget(self, now: float) -> None:
        while self._successes and self._successes[0].at <= now - self._memory:
            self._successes.popleft()
