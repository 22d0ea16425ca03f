"""The HTTP engine: one place for httpx, pacing, 429-aware retries and error mapping."""

from prefect_sessions.errors import RetryHint
from prefect_sessions.http.auth import CredentialAuth, SecretHeaderAuth
from prefect_sessions.http.breaker import BreakerPolicy, CircuitBreaker
from prefect_sessions.http.client import DEFAULT_TIMEOUT, USER_AGENT, HttpClient, RequestStats
from prefect_sessions.http.hints import RateLimitInfo, rate_limit_info, retry_hint
from prefect_sessions.http.pacers import (
    Pacers,
    default_pacers,
    reset_shared_pacers,
    shared_pacer,
    use_redis_pacing,
)
from prefect_sessions.http.pacing import Pacer
from prefect_sessions.http.retry import RetryPolicy, compute_wait, is_retryable_status

__all__ = [
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "BreakerPolicy",
    "CircuitBreaker",
    "CredentialAuth",
    "HttpClient",
    "Pacer",
    "Pacers",
    "RateLimitInfo",
    "RequestStats",
    "RetryHint",
    "RetryPolicy",
    "SecretHeaderAuth",
    "compute_wait",
    "default_pacers",
    "is_retryable_status",
    "rate_limit_info",
    "reset_shared_pacers",
    "retry_hint",
    "shared_pacer",
    "use_redis_pacing",
]
