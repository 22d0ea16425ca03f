"""Pacing at a model endpoint's two budgets (requests and tokens per window, refilled
continuously, published OpenAI's way), simulated on virtual time against the emulator's own
limiter: the tighter budget binds, almost nothing is refused, and the run takes little longer
than that budget allows."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from prefect_sessions.emulator.model_limits import ModelLimit, ModelLimiter
from prefect_sessions.http import Pacer
from tests.support.virtual_time import run_virtual


async def _run(
    clock: Callable[[], float],
    limit: ModelLimit,
    *,
    calls: int,
    tokens: Callable[[int], int],
    estimate: Callable[[int], float],
    workers: int = 12,
    latency: float = 0.2,
) -> tuple[float, int, int]:
    """``calls`` requests from ``workers`` callers; the makespan, the attempts and the 429s."""
    pacer = Pacer(clock=clock, sleep=asyncio.sleep)
    limiter = ModelLimiter(clock)
    queue = list(range(calls))
    attempts = refused = 0
    start = clock()

    async def worker() -> None:
        nonlocal attempts, refused
        while queue:
            number = queue.pop()
            while True:
                async with pacer.slot(tokens=estimate(number)) as grant:
                    attempts += 1
                    decision = limiter.take("key", limit, tokens(number), "m")
                    await asyncio.sleep(latency)
                    status = 200 if decision.allowed else 429
                    pacer.observe(grant, status=status, headers=decision.headers)
                if decision.allowed:
                    break
                refused += 1
                await asyncio.sleep(0.5)  # the engine's smallest backoff

    await asyncio.gather(*(worker() for _ in range(workers)))
    return clock() - start, attempts, refused


def _ideal(limit: ModelLimit, calls: int, tokens_total: int) -> float:
    """The tighter budget's time for the run, less what its full bucket lets through at once."""
    by_requests = (calls - limit.requests) * limit.window_seconds / limit.requests
    by_tokens = (tokens_total - limit.tokens) * limit.window_seconds / limit.tokens
    return max(by_requests, by_tokens)


@pytest.mark.parametrize(
    ("limit", "each", "binding"),
    [
        (ModelLimit(20, 3000, 1.0), 250, "tokens"),  # 12 requests/s of tokens, 20 of requests
        (ModelLimit(10, 50_000, 1.0), 300, "requests"),
        (ModelLimit(600, 90_000, 60.0), 300, "tokens"),  # per minute, as OpenAI counts
    ],
)
def test_the_tighter_budget_binds_with_almost_no_429s(
    limit: ModelLimit, each: int, binding: str
) -> None:
    rng = random.Random(7)
    sizes = [int(each * rng.uniform(0.5, 1.5)) for _ in range(400)]
    makespan, attempts, refused = run_virtual(
        lambda clock: _run(
            clock,
            limit,
            calls=len(sizes),
            tokens=lambda n: sizes[n],
            estimate=lambda n: sizes[n] * 0.9,  # the caller under-estimates by a tenth
        )
    )
    ideal = _ideal(limit, len(sizes), sum(sizes))
    by_requests = (len(sizes) - limit.requests) * limit.window_seconds / limit.requests
    assert (ideal == by_requests) == (binding == "requests")
    assert refused / attempts < 0.02
    assert makespan <= 1.10 * ideal


def test_without_the_token_quota_the_same_run_is_refused_often() -> None:
    # The control: pacing on requests alone (no token estimate) overruns the token budget.
    limit = ModelLimit(20, 3000, 1.0)
    _, attempts, refused = run_virtual(
        lambda clock: _run(clock, limit, calls=300, tokens=lambda n: 250, estimate=lambda n: 0)
    )
    assert refused / attempts > 0.1


def test_azure_minus_one_and_zero_publish_nothing() -> None:
    async def go(clock: Callable[[], float]) -> float | None:
        pacer = Pacer(clock=clock, sleep=asyncio.sleep)
        grant = await pacer.acquire(tokens=100)
        headers = {
            "x-ratelimit-limit-requests": "-1",
            "x-ratelimit-remaining-requests": "-1",
            "x-ratelimit-limit-tokens": "0",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "0s",
        }
        pacer.observe(grant, status=200, headers=headers)
        assert not pacer.published
        await pacer.acquire(tokens=10_000)  # nothing published: nothing to wait for
        return pacer.rate

    assert run_virtual(go) is None
