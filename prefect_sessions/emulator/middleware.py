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

from prefect_sessions.emulator.api import DEFERRED_LATENCY, EmulatedAPI
from prefect_sessions.emulator.config import EmulatorConfigError, RateLimit
from prefect_sessions.emulator.errors import provider_error
from prefect_sessions.emulator.faults import (
    FAULT_HEADER,
    LATENCY_HEADER,
    CutSend,
    MalformedSend,
    drop_connection,
    wait_or_disconnect,
)
from prefect_sessions.emulator.providers import owner_of
from prefect_sessions.emulator.ratelimit import Decision
from prefect_sessions.emulator.state import EmulatorState


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


def caller_key(api: EmulatedAPI, scope: Scope, state: EmulatorState) -> str:
    """The credential a request is counted against (never logged; counters hash it)."""
    return api.caller_key(request_headers(scope), scope["path"], state.stores[api.name])


def rate_limit_headers(api: EmulatedAPI, limit: RateLimit, decision: Decision) -> dict[str, str]:
    """The headers an API sends about its limit, in the shape ``limit.publish`` asks for (a
    limit's own ``publish=`` and ``scope=`` override the API's defaults)."""
    publish = limit.publish or api.publish
    if publish == "none" or limit.counting == "inflight":
        return {}  # nobody publishes a window for requests in flight
    refused = not decision.allowed
    floored = api.retry_after == "floor"
    retry_after = decision.retry_after_floor if floored else decision.retry_after_ceil
    reset = decision.reset_iso if api.reset == "iso" else str(decision.retry_after_ceil)
    headers: dict[str, str] = {}
    if publish == "headers":
        headers = {
            "X-RateLimit-Limit": str(decision.limit),
            "X-RateLimit-Remaining": str(decision.remaining),
            "X-RateLimit-Reset": reset,
        }
    elif refused and api.reset_on_refusal:
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
        api = owner_of(scope.get("path", "")) if scope["type"] == "http" else None
        if api is None:  # the admin routes, the docs, an unknown path
            await self.app(scope, receive, send)
            return
        provider = api.name
        state = self.state
        route = route_template(scope, self.routes)
        key = caller_key(api, scope, state)
        state.counters.add(provider, route, key, "requests")

        extra: dict[str, str] = {}
        limit = state.limit_for(provider, route)
        bucket: tuple[Any, ...] | None = None
        if limit is not None:
            bucket = (provider, key)
            if (limit.scope or api.scope) == "endpoint":
                bucket = (provider, key, route)
            decision = state.limiter.take(bucket, limit)
            extra = rate_limit_headers(api, limit, decision)
            if not decision.allowed:
                state.counters.add(provider, route, key, "rate_limited")
                message = api.rate_limited_message
                if limit.counting == "inflight":
                    message = api.too_many_concurrent_message
                response = provider_error(api, 429, message, extra)
                await response(scope, receive, send)
                return
            if limit.counting != "inflight":
                bucket = None  # only requests in flight give their place back
        try:
            await self._handle(api, route, key, scope, receive, HeaderSend(send, extra))
        finally:
            if bucket is not None:
                state.limiter.leave(bucket)

    async def _handle(
        self, api: EmulatedAPI, route: str, key: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        state = self.state
        headers = request_headers(scope)
        try:
            latency = self._latency(headers.get(LATENCY_HEADER))
            fault = state.faults.decide(scope["path"], headers.get(FAULT_HEADER))
        except EmulatorConfigError as exc:
            await provider_error(api, 400, str(exc))(scope, receive, send)
            return
        if fault is None and route in api.latency_in_answer:
            # The handler spends it inside the time the vendor is busy with the request.
            scope.setdefault("state", {})[DEFERRED_LATENCY] = latency
            await self.app(scope, receive, send)
            return
        if latency > 0:
            await asyncio.sleep(latency)
        if fault is None:
            await self.app(scope, receive, send)
            return
        state.counters.add(api.name, route, key, "faults")
        await self._inject(fault, api, scope, receive, send)

    def _latency(self, header: str | None) -> float:
        """Seconds of the configured latency with jitter, or of this request's
        ``X-Emulator-Latency-Ms``."""
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
            return 0.0
        spread = self.state.rng.uniform(-jitter, jitter) if jitter > 0 else 0.0
        return min(max(0.0, latency + spread), 600_000.0) / 1000.0

    async def _inject(
        self, fault: str, api: EmulatedAPI, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if fault == "error":
            status = self.state.config.error_status
            message = "Service temporarily unavailable (emulated fault)"
            await provider_error(api, status, message)(scope, receive, send)
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
