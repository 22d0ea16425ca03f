"""Error answers the gateway gives in a vendor's name, in that vendor's envelope (each emulated
API brings its own: :attr:`~prefect_sessions.emulator.api.EmulatedAPI.error`)."""

from __future__ import annotations

from http import HTTPStatus

from starlette.responses import JSONResponse

from prefect_sessions.emulator.api import EmulatedAPI


def phrase(status: int) -> str:
    """The standard reason phrase of an HTTP status (``Error`` for an unknown one)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def provider_error(
    api: EmulatedAPI | None, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in the envelope of whichever emulated API owns the request."""
    if api is not None:
        return api.error(status, message, headers)
    return JSONResponse({"detail": message}, status_code=status, headers=headers)
