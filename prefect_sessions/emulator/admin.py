"""Admin routes under ``/_emulator`` (like moto's ``/moto-api/``): reset, counters, limits, faults.

Never rate limited and never faulted, so a test can always reach them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from prefect_sessions.emulator.config import EmulatorConfigError, RateLimit
from prefect_sessions.emulator.context import emulator_state

PREFIX = "/_emulator"


class LimitsUpdate(BaseModel):
    """New limits per emulated API, by its name, and per route: ``"20/1s"``, ``"20/1s bucket
    burst=5 publish=none"``, ``"inflight=4"``, or ``"off"``/``null`` for none; absent:
    unchanged."""

    model_config = ConfigDict(extra="allow")
    routes: dict[str, str | None] = Field(
        default_factory=dict,
        description="Per-route limits, by route: a null value removes the route's own limit.",
        examples=[{"POST /v1/sessions/keep-alive": "5/1s"}],
    )


class FaultsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rates: dict[str, float] = Field(default_factory=dict, examples=[{"error": 0.1}])
    seed: int | None = None


class QueuedFaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(examples=["reset"])
    count: int = Field(default=1, ge=1)
    route: str | None = Field(default=None, description="A path prefix, e.g. /v4/interact.")


class LatencyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency_ms: float = Field(ge=0)
    jitter_ms: float = Field(default=0, ge=0)


def _limits(request: Request) -> dict[str, Any]:
    settings = emulator_state(request).settings
    shown: dict[str, Any] = {
        name: str(limit) if limit else None for name, limit in settings.limits.items()
    }
    shown["routes"] = {
        route: str(limit) if limit else None for route, limit in settings.route_limits.items()
    }
    return shown


def _bad(exc: EmulatorConfigError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=400)


def build_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["emulator admin"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.post("/reset")
    async def reset(request: Request) -> dict[str, bool]:
        """Forget all sessions, state, counters and windows; restore configured limits/faults."""
        emulator_state(request).reset()
        return {"reset": True}

    @router.get("/counters")
    async def counters(request: Request) -> dict[str, Any]:
        """Requests, 429s and faults per provider, route and key (keys shown as hashes)."""
        state = emulator_state(request)
        return {"totals": state.counters.totals(), "routes": state.counters.rows()}

    @router.get("/limits")
    async def get_limits(request: Request) -> dict[str, Any]:
        return _limits(request)

    @router.put("/limits", response_model=None)
    async def put_limits(update: LimitsUpdate, request: Request) -> Response | dict[str, Any]:
        """Change limits at run time; windows restart for every provider."""
        state = emulator_state(request)
        given = dict(update.model_extra or {})
        unknown = sorted(set(given) - set(state.settings.limits))
        if unknown:
            known = ", ".join(sorted(state.settings.limits))
            return _bad(EmulatorConfigError(f"unknown API {', '.join(unknown)}: use {known}"))
        try:
            parsed = {
                name: RateLimit.parse(text if text is None else str(text))
                for name, text in given.items()
            }
            routes = {route: RateLimit.parse(text) for route, text in update.routes.items()}
        except EmulatorConfigError as exc:
            return _bad(exc)
        state.settings.limits.update(parsed)
        for route, limit in routes.items():
            state.set_route_limit(route, limit)
        state.limiter.reset()
        return _limits(request)

    @router.get("/faults")
    async def get_faults(request: Request) -> dict[str, Any]:
        plan = emulator_state(request).faults
        return {"rates": plan.rates, "seed": plan.seed, "queued": plan.queued()}

    @router.put("/faults", response_model=None)
    async def put_faults(update: FaultsUpdate, request: Request) -> Response | dict[str, Any]:
        plan = emulator_state(request).faults
        try:
            plan.set_rates(update.rates, update.seed)
        except EmulatorConfigError as exc:
            return _bad(exc)
        return {"rates": plan.rates, "seed": plan.seed, "queued": plan.queued()}

    @router.post("/faults/next", response_model=None)
    async def queue_fault(
        update: QueuedFaultRequest, request: Request
    ) -> Response | dict[str, Any]:
        """Give the next ``count`` matching requests a fault (``route``: a path prefix)."""
        plan = emulator_state(request).faults
        try:
            plan.enqueue(update.kind, count=update.count, route=update.route)
        except EmulatorConfigError as exc:
            return _bad(exc)
        return {"queued": plan.queued()}

    @router.put("/latency")
    async def put_latency(update: LatencyUpdate, request: Request) -> dict[str, float]:
        settings = emulator_state(request).settings
        settings.latency_ms, settings.jitter_ms = update.latency_ms, update.jitter_ms
        return {"latency_ms": settings.latency_ms, "jitter_ms": settings.jitter_ms}

    return router
