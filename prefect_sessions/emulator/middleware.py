"""The layer in front of every provider route: counting, rate limits, latency and faults.

It runs before the routes so a 429 or a fault costs the emulated provider nothing, exactly as a
gateway in front of the real service would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prefect_sessions.emulator.config import EmulatorConfigError, RateLimit
from prefect_sessions.emulator.errors import Provider, provider_error, provider_of
from prefect_sessions.emulator.faults import (
    FAULT_HEADER,
    LATENCY_HEADER,
    CutSend,
    MalformedSend,
    drop_connection,
    wait_or_disconnect,
)
from prefect_sessions.emulator.ratelimit import Decision
from prefect_sessions.emulator.state import EmulatorState

_TOO_MANY_CONCURRENT = {
    "voiceflow": "Too Many Requests",
    "vectara": "Too many concurrent requests",
    "liveavatar": "Too many concurrent requests.",
}
_RATE_LIMITED_MESSAGE = {
    "voiceflow": "Too Many Requests",
    "vectara": "rate_limit_exceeded: too many requests for this API key, retry later",
    "liveavatar": "Too many requests. Retry after the time given in Retry-After.",
}


def route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """``"POST /v4/interact"``-style name of the route a request matches (path params kept as
    ``{names}``), so counters and LiveAvatar's per-endpoint windows ignore path values."""
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL and isinstance(route, Route | APIRoute):
            return f"{scope['method']} {route.path}"
    return f"{scope['method']} (no such route)"


def request_headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }
    return headers


def caller_key(provider: Provider, scope: Scope, state: EmulatorState) -> str:
    """The credential a request is counted against (never logged; counters hash it)."""
    headers = request_headers(scope)
    if provider == "voiceflow":
        credential = headers.get("authorization", "")
        if scope["path"].startswith("/v4/interact"):
            # Interact counts against the API key that started the session: one key, one bucket.
            return state.voiceflow.owner_of(credential) or credential
        return credential
    credential = headers.get("x-api-key") or headers.get("authorization", "")
    return credential.removeprefix("Bearer ").strip()


#: What each vendor documents a limited answer to carry, and what one bucket counts (a limit's own
#: ``publish=`` and ``scope=`` override these).
DEFAULT_PUBLISH: dict[str, str] = {
    "voiceflow": "headers",  # the open-source runtime: X-RateLimit-* on every answer
    "liveavatar": "retry-after",  # Retry-After and X-RateLimit-Reset seconds on a 429
    "vectara": "none",  # "429 rate_limit_exceeded", no numbers, no headers
}
DEFAULT_SCOPE: dict[str, str] = {"voiceflow": "key", "liveavatar": "endpoint", "vectara": "key"}


def rate_limit_headers(provider: Provider, limit: RateLimit, decision: Decision) -> dict[str, str]:
    """The headers a provider sends about its limit, in the shape ``limit.publish`` asks for."""
    publish = limit.publish or DEFAULT_PUBLISH[provider]
    if publish == "none" or limit.counting == "inflight":
        return {}  # nobody publishes a window for requests in flight
    refused = not decision.allowed
    # Voiceflow's runtime floors Retry-After (it can be 0) and sends an ISO-8601 reset; the
    # others give whole seconds, rounded up.
    voiceflow = provider == "voiceflow"
    retry_after = decision.retry_after_floor if voiceflow else decision.retry_after_ceil
    reset = decision.reset_iso if voiceflow else str(decision.retry_after_ceil)
    headers: dict[str, str] = {}
    if publish == "headers":
        headers = {
            "X-RateLimit-Limit": str(decision.limit),
            "X-RateLimit-Remaining": str(decision.remaining),
            "X-RateLimit-Reset": reset,
        }
    elif refused and provider == "liveavatar":
        headers["X-RateLimit-Reset"] = reset
    if refused:
        headers["Retry-After"] = str(retry_after)
    return headers


class HeaderSend:
    """Adds headers to the response start message."""

    def __init__(self, send: Send, headers: dict[str, str]) -> None:
        self._send = send
        self._headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self._headers:
            message = {**message, "headers": [*message.get("headers", []), *self._headers]}
        await self._send(message)


async def _buffer_body(receive: Receive) -> list[Message]:
    """Read the whole request body now (so what follows on ``receive`` is only a disconnect)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


class EmulatorMiddleware:
    """Pure ASGI middleware (streams pass through untouched unless a fault is asked for)."""

    def __init__(self, app: ASGIApp, state: EmulatorState, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.state = state
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        provider = provider_of(scope.get("path", "")) if scope["type"] == "http" else None
        if provider is None or provider == "admin":
            await self.app(scope, receive, send)
            return
        state = self.state
        route = route_template(scope, self.routes)
        key = caller_key(provider, scope, state)
        state.counters.add(provider, route, key, "requests")

        extra: dict[str, str] = {}
        limit = state.limit_for(provider, route)
        bucket: tuple[Any, ...] | None = None
        if limit is not None:
            bucket = (provider, key)
            if (limit.scope or DEFAULT_SCOPE[provider]) == "endpoint":
                bucket = (provider, key, route)
            decision = state.limiter.take(bucket, limit)
            extra = rate_limit_headers(provider, limit, decision)
            if not decision.allowed:
                state.counters.add(provider, route, key, "rate_limited")
                message = _RATE_LIMITED_MESSAGE[provider]
                if limit.counting == "inflight":
                    message = _TOO_MANY_CONCURRENT[provider]
                response = provider_error(provider, 429, message, extra)
                await response(scope, receive, send)
                return
            if limit.counting != "inflight":
                bucket = None  # only requests in flight give their place back
        try:
            await self._handle(provider, route, key, scope, receive, HeaderSend(send, extra))
        finally:
            if bucket is not None:
                state.limiter.leave(bucket)

    async def _handle(
        self, provider: Provider, route: str, key: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        state = self.state
        headers = request_headers(scope)
        try:
            await self._latency(headers.get(LATENCY_HEADER))
            fault = state.faults.decide(scope["path"], headers.get(FAULT_HEADER))
        except EmulatorConfigError as exc:
            await provider_error(provider, 400, str(exc))(scope, receive, send)
            return
        if fault is None:
            await self.app(scope, receive, send)
            return
        state.counters.add(provider, route, key, "faults")
        await self._inject(fault, provider, scope, receive, send)

    async def _latency(self, header: str | None) -> None:
        """The configured latency with jitter, or this request's ``X-Emulator-Latency-Ms``."""
        settings = self.state.settings
        latency, jitter = settings.latency_ms, settings.jitter_ms
        if header is not None:
            try:
                latency, jitter = float(header), 0.0
            except ValueError:
                raise EmulatorConfigError(
                    f"{LATENCY_HEADER}: {header!r} is not a number of milliseconds"
                ) from None
        if latency <= 0 and jitter <= 0:
            return
        spread = self.state.rng.uniform(-jitter, jitter) if jitter > 0 else 0.0
        await asyncio.sleep(min(max(0.0, latency + spread), 600_000.0) / 1000.0)

    async def _inject(
        self, fault: str, provider: Provider, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if fault == "error":
            status = self.state.config.error_status
            message = "Service temporarily unavailable (emulated fault)"
            await provider_error(provider, status, message)(scope, receive, send)
        elif fault == "reset":
            await drop_connection(scope, after_bytes=False)
        elif fault == "slow":
            body = await _buffer_body(receive)
            if not await wait_or_disconnect(self.state.config.slow_seconds, receive):
                await self.app(scope, _replay(body, receive), send)
        elif fault == "cut":
            await self.app(scope, receive, CutSend(scope, send))
        elif fault == "malformed":
            await self.app(scope, receive, MalformedSend(send))
