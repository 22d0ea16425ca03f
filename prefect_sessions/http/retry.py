"""When to retry a request and how long to wait first.

The decisions live here as pure functions so that they can be property-tested without a network;
the client's retry loop (:meth:`prefect_sessions.http.HttpClient.request`) asks
:func:`next_wait` after each failed attempt, as openai-python's ``_base_client`` asks its
``_should_retry`` and ``_calculate_retry_timeout``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from prefect_sessions.errors import ProviderError, ProviderUnavailableError, RetryHint

#: Statuses worth a retry when the request is safe to replay.
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})

#: Statuses that prove the server did not act on the request, so even a non-idempotent request
#: (an interact turn, a message, an event) may be sent again.
NOT_ACTED_STATUSES = frozenset({429, 503})


class RetryPolicy(BaseModel):
    """How hard the HTTP engine tries before it gives up on one request.

    Waits honour the server's hint (``retry-after-ms``, ``Retry-After``, ``X-RateLimit-Reset``) and
    never come back earlier than it; without a hint they back off exponentially with full jitter.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(
        default=6, ge=1, le=50, description="Attempts per request, the first one included."
    )
    max_wait_seconds: float = Field(
        default=60.0,
        ge=0.0,
        le=3600.0,
        description=(
            "Total time one request may spend waiting between attempts. When the server asks "
            "for longer than what is left, the request fails with RateLimitedError at once."
        ),
    )
    backoff_base_seconds: float = Field(
        default=0.5, gt=0.0, le=60.0, description="First backoff ceiling when there is no hint."
    )
    backoff_max_seconds: float = Field(
        default=8.0, gt=0.0, le=600.0, description="Largest backoff ceiling when there is no hint."
    )
    jitter_ratio: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Upward jitter added to a server hint, as a share of the hint.",
    )


def backoff_ceiling(policy: RetryPolicy, attempt: int) -> float:
    """The exponential ceiling after ``attempt`` failed attempts (1-based)."""
    exponent = min(max(attempt - 1, 0), 62)
    return float(min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2.0**exponent))


def compute_wait(
    policy: RetryPolicy,
    *,
    attempt: int,
    hint: RetryHint | None,
    budget_left: float,
    rand: Callable[[], float],
) -> float | None:
    """Seconds to wait before the next attempt, or ``None`` when no retry fits in the budget.

    - With a hint: at least ``hint.seconds``, plus upward jitter over the hint's resolution and
      ``jitter_ratio`` of the hint, clipped to the budget. A hint longer than the budget gives
      ``None``: retrying earlier than the server allows only earns another 429.
    - Without a hint: full jitter, ``U(0, min(max, base * 2**(attempt-1)))``, clipped to the budget.

    ``rand`` returns a float in ``[0, 1)`` (``random.random``), injected so tests are exact.
    """
    budget_left = max(0.0, budget_left)
    if hint is not None:
        if hint.seconds > budget_left:
            return None
        spread = policy.jitter_ratio * hint.seconds + hint.resolution
        return min(hint.seconds + rand() * spread, budget_left)
    if budget_left <= 0.0:
        return None
    return min(rand() * backoff_ceiling(policy, attempt), budget_left)


def is_retryable_status(status: int, *, idempotent: bool, should_retry: bool | None) -> bool:
    """Whether a response with ``status`` may be retried.

    ``x-should-retry`` wins when the server sends it. Otherwise an idempotent request is retried on
    :data:`RETRYABLE_STATUSES`, and a non-idempotent one only on :data:`NOT_ACTED_STATUSES`.
    """
    if should_retry is not None:
        return should_retry
    if idempotent:
        return status in RETRYABLE_STATUSES
    return status in NOT_ACTED_STATUSES


def next_wait(
    policy: RetryPolicy,
    error: ProviderError,
    *,
    attempt: int,
    waited: float,
    provider_down: bool,
    rand: Callable[[], float],
) -> float | None:
    """After attempt number ``attempt`` (from 1) failed with ``error``, having waited ``waited``
    seconds between attempts so far: how long to wait before the next one, or ``None`` to stop.

    - A failure that is not safe to retry stops at once.
    - While the provider answers nothing at all and the circuit breaker counts it as failing
      (``provider_down``), the breaker decides when to stop, not the attempts or the budget, so
      no conversation gets a verdict from an outage: the wait is then ``math.inf``, which the
      caller shortens to when the breaker gives up.
    - Otherwise: no more than ``policy.max_attempts`` attempts, and no wait that would take the
      total past ``policy.max_wait_seconds`` (a server hint longer than what is left stops too).
    """
    if not error.retryable:
        return None
    wait = compute_wait(
        policy,
        attempt=attempt,
        hint=error.hint,
        budget_left=policy.max_wait_seconds - waited,
        rand=rand,
    )
    unanswered = isinstance(error, ProviderUnavailableError) and error.status_code is None
    if unanswered and provider_down:
        return math.inf if wait is None else wait
    if attempt >= policy.max_attempts or wait is None:
        return None
    return None if waited + wait > policy.max_wait_seconds else wait


def gave_up_detail(
    policy: RetryPolicy, error: ProviderError, *, attempt: int, waited: float
) -> str | None:
    """Why retrying stopped, for the error's message (``None``: its "after N attempts" says it)."""
    budget_left = max(0.0, policy.max_wait_seconds - waited)
    if error.hint is not None and error.hint.seconds > budget_left:
        return (
            f"the server asked to wait {error.hint.seconds:.1f} s ({error.hint.source}) but only "
            f"{budget_left:.1f} s of the {policy.max_wait_seconds:g} s retry budget was left; "
            "not retrying early"
        )
    if attempt >= policy.max_attempts:
        return None
    return f"gave up: the {policy.max_wait_seconds:g} s retry budget is spent"
