"""An asyncio loop on virtual time, and simulated providers that limit it, for the pacer's tests.

When nothing is ready to run, the loop jumps its clock to the next timer instead of waiting, so a
simulated minute of paced traffic takes a fraction of a second and always runs the same way. The
simulated servers count with the emulator's own ``Limiter`` on that clock.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prefect_sessions.emulator.config import RateLimit
from prefect_sessions.emulator.ratelimit import Limiter
from prefect_sessions.http import Pacer

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is not None and timeout > 0:
            self._clock[0] += timeout
            timeout = 0
        return super().select(timeout)


def run_virtual(main: Callable[[Callable[[], float]], Awaitable[T]]) -> T:
    """Run ``main(clock)`` on a loop whose time only moves when every task waits."""
    clock = [1_000.0]
    loop = asyncio.SelectorEventLoop(_JumpingSelector(clock))
    loop.time = lambda: clock[0]  # type: ignore[method-assign]
    try:
        return loop.run_until_complete(main(lambda: clock[0]))
    finally:
        loop.close()


@dataclass
class Traffic:
    """What a simulated run sent: (send time, accepted) per attempt."""

    attempts: list[tuple[float, bool]] = field(default_factory=list)

    def share_refused(self, since: float = float("-inf")) -> float:
        picked = [ok for at, ok in self.attempts if at >= since]
        return picked.count(False) / max(1, len(picked))

    def goodput(self, start: float, end: float) -> float:
        accepted = sum(1 for at, ok in self.attempts if ok and start <= at < end)
        return accepted / (end - start)


async def simulate(
    clock: Callable[[], float],
    pacer: Pacer,
    limit: Callable[[float], RateLimit],
    *,
    seconds: float,
    workers: int = 16,
    latency: float = 0.03,
    publish: bool = False,
    used_before: float = 0.0,
) -> Traffic:
    """``workers`` callers send through ``pacer`` for ``seconds`` to a server limited by
    ``limit(elapsed)``; a refused request is sent again after the engine's smallest backoff.

    ``used_before``: someone used the key that long before the run, so the run's first answer
    comes in the middle of a window.
    """
    limiter = Limiter(clock)
    traffic = Traffic()
    if used_before:
        limiter.take("key", limit(0.0))
        await asyncio.sleep(used_before)
    start = clock()

    async def worker() -> None:
        while clock() - start < seconds:
            async with pacer.slot() as grant:
                shape = limit(clock() - start)
                decision = limiter.take("key", shape)
                traffic.attempts.append((clock(), decision.allowed))
                await asyncio.sleep(latency)
                if shape.counting == "inflight" and decision.allowed:
                    limiter.leave("key")
                headers = {}
                if publish:
                    headers = {
                        "x-ratelimit-limit": str(decision.limit),
                        "x-ratelimit-remaining": str(decision.remaining),
                        "x-ratelimit-reset": f"{decision.seconds_to_reset:.3f}",
                    }
                status = 200 if decision.allowed else 429
                pacer.observe(grant, status=status, headers=headers)
            if status == 429:
                await asyncio.sleep(0.25)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return traffic
