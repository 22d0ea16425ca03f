"""A circuit breaker per client: a provider that stopped answering stops the run, not each request.

Without it every request of a batch spends its whole retry budget against a dead base URL, so
2,000 conversations take as long as 2,000 retry budgets allow and say nothing about why. The
breaker watches what each attempt met:

- **closed**: requests go out. A success at any time keeps it closed.
- **open**: every attempt for :attr:`~BreakerPolicy.open_after` seconds failed to connect or
  timed out, and none succeeded. Requests wait; one *probe* every
  :attr:`~BreakerPolicy.probe_every` seconds is let through (half-open). A probe that succeeds
  closes the breaker and the waiting requests go on, so a provider that comes back loses nothing.
- **down**: nothing has succeeded for :attr:`~BreakerPolicy.give_up_after` seconds. Every waiting
  and later request raises :class:`~prefect_sessions.errors.ProviderDownError` at once, naming
  the base URL and how it failed, and the run stops with the rest of its conversations left
  without a verdict (a resume with the same run key picks them up).

Only failures that prove nothing answered count: a refused connection, an unresolved name, a
timeout. Any HTTP answer, even a 500 or a 429, shows the provider is there.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from prefect_sessions.errors import ProviderDownError


class BreakerPolicy(BaseModel):
    """When a provider counts as gone, and for how long the run waits for it to come back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    open_after: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds of nothing but failed connections before requests stop going out.",
    )
    probe_every: float = Field(
        default=2.0, gt=0, le=60, description="Seconds between probes while the breaker is open."
    )
    give_up_after: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "Seconds without any success, counted from the first failure, after which the run "
            "stops: waiting requests fail with ProviderDownError."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> BreakerPolicy:
        if self.give_up_after < self.open_after:
            raise ValueError("give_up_after must be at least open_after")
        return self


def failure_kind(exc: httpx.TransportError) -> str | None:
    """How an attempt failed, in a user's words, when it proves nothing answered; else ``None``."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if not isinstance(exc, httpx.ConnectError):
        return None
    # httpx says "All connection attempts failed"; the socket error underneath says why.
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "name not resolved"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, OSError) and seen.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "host unreachable"
        text = str(seen).lower()
        if "name or service not known" in text or "name resolution" in text:
            return "name not resolved"
        if "refused" in text:
            return "connection refused"
        seen = seen.__cause__ or seen.__context__
    return "could not connect"


@dataclass
class _Failing:
    since: float
    kind: str
    count: int = 1


class CircuitBreaker:
    """The breaker of one client (one base URL and key). Safe to share by the tasks of one event
    loop; a client is never shared across loops."""

    def __init__(
        self,
        base_url: str,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._sleep = sleep
        self._failing: _Failing | None = None
        self._probe_at = 0.0
        self._probing = False
        self._changed = asyncio.Event()

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``down``."""
        failing = self._failing
        if failing is None:
            return "closed"
        elapsed = self._clock() - failing.since
        if elapsed >= self.policy.give_up_after:
            return "down"
        return "open" if elapsed >= self.policy.open_after else "closed"

    @property
    def failing(self) -> bool:
        """Whether nothing has answered since a failure (a streak is under way)."""
        return self._failing is not None

    def reason(self) -> str:
        """One line: which base URL failed, how, and for how long."""
        failing = self._failing
        if failing is None:
            return f"{self.base_url} is answering"
        seconds = self._clock() - failing.since
        return (
            f"the provider at {self.base_url} did not answer for {seconds:.0f} s "
            f"({failing.kind}, {failing.count} attempts failed, none succeeded)"
        )

    async def admit(self) -> bool:
        """Wait until an attempt may go out; ``True`` if it is the half-open probe.

        Raises:
            ProviderDownError: the provider has not answered for ``give_up_after`` seconds.
        """
        while True:
            state = self.state
            if state == "closed":
                return False
            if state == "down":
                raise self.down_error()
            now = self._clock()
            if not self._probing and now >= self._probe_at:
                self._probing = True
                return True
            failing = self._failing
            assert failing is not None  # open
            deadline = failing.since + self.policy.give_up_after
            wake = deadline if self._probing else min(self._probe_at, deadline)
            await self._wait(max(0.0, wake - now))

    def cut(self, seconds: float) -> float:
        """A wait between retries, shortened so that it ends when the provider is given up on
        (a request in a long backoff must not hold the run past ``give_up_after``)."""
        failing = self._failing
        if failing is None:
            return seconds
        left = failing.since + self.policy.give_up_after - self._clock()
        return min(seconds, max(0.0, left))

    def succeeded(self, probe: bool = False) -> None:
        """An attempt got an HTTP answer: the provider is there."""
        if probe:
            self._probing = False
        if self._failing is not None:
            self._failing = None
            self._notify()

    def failed(self, kind: str | None, probe: bool = False) -> None:
        """An attempt failed; ``kind`` is :func:`failure_kind` of its error (``None``: the
        provider may have answered, e.g. a cut stream, so it does not count)."""
        now = self._clock()
        if probe:
            self._probing = False
            self._probe_at = now + self.policy.probe_every
            self._notify()
        if kind is None:
            return
        if self._failing is None:
            self._failing = _Failing(since=now, kind=kind)
            self._probe_at = now + self.policy.open_after
        else:
            self._failing.count += 1
            self._failing.kind = kind

    def abandoned(self, probe: bool) -> None:
        """An admitted attempt ended without an outcome (cancelled): free the probe."""
        if probe:
            self._probing = False
            self._notify()

    def down_error(self) -> ProviderDownError:
        return ProviderDownError(self.reason(), base_url=self.base_url)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` or until the breaker changes (a probe ended), whichever is first."""
        changed = asyncio.ensure_future(self._changed.wait())
        slept = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait((changed, slept), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (changed, slept):
                waiter.cancel()
