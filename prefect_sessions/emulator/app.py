"""The emulator as one ASGI app: every emulated vendor API on one port."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from prefect_sessions._version import __version__
from prefect_sessions.emulator import admin
from prefect_sessions.emulator.config import EmulatorConfig
from prefect_sessions.emulator.errors import provider_error
from prefect_sessions.emulator.middleware import EmulatorMiddleware
from prefect_sessions.emulator.providers import emulated_apis, owner_of
from prefect_sessions.emulator.state import EmulatorState


def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and methods answer in the envelope of the provider the path belongs to.
    assert isinstance(exc, StarletteHTTPException)
    return provider_error(
        owner_of(request.url.path), exc.status_code, str(exc.detail), dict(exc.headers or {})
    )


def create_app(
    config: EmulatorConfig | None = None, *, clock: Callable[[], float] | None = None
) -> FastAPI:
    """Build an emulator app with its own in-memory state.

    Args:
        config: keys, limits, latency, faults and agent; the defaults need no setup.
        clock: the wall clock (epoch seconds) for windows and session lifetimes; tests may pass
            a fake one.

    Example:
        ```python
        app = create_app()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
            ...
        ```
    """
    state = EmulatorState(config or EmulatorConfig(), clock or time.time)
    app = FastAPI(
        title="prefect-sessions emulator",
        version=__version__,
        docs_url="/_emulator/docs",
        redoc_url=None,
        openapi_url="/_emulator/openapi.json",
    )
    app.state.emulator = state
    provider_routers = [router for api in emulated_apis() for router in api.routers()]
    for router in provider_routers:
        app.include_router(router, include_in_schema=False)
    for api in emulated_apis():
        for router in api.extra_routers():
            app.include_router(router)
        for exc_class, function in api.exception_handlers().items():
            app.add_exception_handler(exc_class, function)
    app.include_router(admin.build_router())
    app.add_exception_handler(StarletteHTTPException, _http_error)
    routes = [route for router in provider_routers for route in router.routes]
    app.add_middleware(EmulatorMiddleware, state=state, routes=routes)
    return app
