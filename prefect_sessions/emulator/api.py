"""One vendor's emulated API, as the rest of the emulator sees it.

Each module of :mod:`prefect_sessions.emulator.providers` defines ``API``, an :class:`EmulatedAPI`:
which paths it owns, its error envelope, its routes and store, and how the vendor limits its
callers. The app, the gateway middleware, the state, the admin routes and the command iterate
them; none of those names a vendor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter
from starlette.responses import JSONResponse

#: Builds an error answer in the vendor's envelope: ``error(status, message, headers)``.
ErrorEnvelope = Callable[[int, str, "dict[str, str] | None"], JSONResponse]


@dataclass(frozen=True)
class EmulatedAPI:
    """One vendor's API on the emulator.

    Attributes:
        name: the name used in limits, counters, options (``--<name>-limit``) and the admin API.
        title: how the start-up banner names it.
        prefixes: path prefixes it owns; ``exact`` paths it owns too.
        error: its error envelope, for answers the gateway gives in its name (429, faults, 404).
        routers: its routes, counted, limited and faulted by the gateway.
        extra_routers: routes outside the gateway (LiveAvatar's websocket).
        exception_handlers: its route errors rendered in its envelope.
        new_store: its in-memory store, given the scripted agent and the clock.
        default_limit: the limit it starts with, as ``--<name>-limit`` takes it.
        limit_help: the help of ``--<name>-limit``.
        publish: what a limited answer carries by default (``headers``, ``retry-after``, ``none``).
        scope: what one bucket counts by default (``key`` or ``endpoint``).
        rate_limited_message, too_many_concurrent_message: its 429 messages.
        caller_key: the credential a request counts against: ``(headers, path, store) -> key``.
        retry_after: how it rounds ``Retry-After`` (Voiceflow's runtime floors it; it can be 0).
        reset: ``X-RateLimit-Reset`` as an ISO-8601 time or as seconds.
        reset_on_refusal: a refused answer carries ``X-RateLimit-Reset`` even when nothing else
            about the limit is published.
        latency_in_answer: routes (``"POST /path/{param}"``) whose handler spends the added
            latency itself, inside the time the vendor is busy with the request (Vectara's
            session input: the session is running from the input's arrival).
    """

    name: str
    title: str
    prefixes: tuple[str, ...]
    error: ErrorEnvelope
    routers: Callable[[], list[APIRouter]]
    exception_handlers: Callable[[], Mapping[type[Exception], Any]]
    new_store: Callable[[Any, Callable[[], float]], Any]
    default_limit: str
    limit_help: str
    caller_key: Callable[[Mapping[str, str], str, Any], str]
    exact: tuple[str, ...] = ()
    extra_routers: Callable[[], list[APIRouter]] = field(default=lambda: [])
    publish: Literal["headers", "retry-after", "none"] = "headers"
    scope: Literal["key", "endpoint"] = "key"
    rate_limited_message: str = "Too Many Requests"
    too_many_concurrent_message: str = "Too many concurrent requests"
    retry_after: Literal["floor", "ceil"] = "ceil"
    reset: Literal["iso", "seconds"] = "seconds"
    reset_on_refusal: bool = False
    latency_in_answer: frozenset[str] = frozenset()

    def owns(self, path: str) -> bool:
        """Whether a request path belongs to this API."""
        return path in self.exact or path.startswith(self.prefixes)


#: Where a route of ``latency_in_answer`` finds the latency it must spend (``request.state``).
DEFERRED_LATENCY = "emulator_latency_seconds"


def bearer_or_api_key(headers: Mapping[str, str], path: str, store: Any) -> str:
    """The usual caller key: ``x-api-key``, else the ``authorization`` header without Bearer."""
    credential = headers.get("x-api-key") or headers.get("authorization", "")
    return credential.removeprefix("Bearer ").strip()
