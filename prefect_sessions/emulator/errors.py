"""Each provider's error envelope, so a client's error reader sees exactly what the real API sends.

- Voiceflow: ``{code, status, dateTime, timestamp, data}`` (runtime ``VError`` / backend-utils).
- Vectara: ``{messages: [...], request_id}``, plus ``field_errors`` on 400 and ``id`` on 404.
- LiveAvatar: ``{code, data, message}``; 422 is FastAPI's ``{detail: [...]}`` (raised by FastAPI).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Literal

from starlette.responses import JSONResponse

Provider = Literal["voiceflow", "vectara", "liveavatar", "admin"]


def provider_of(path: str) -> Provider | None:
    """Which provider a path belongs to, from its prefix (``None``: not an emulated API)."""
    if path.startswith(("/v4/", "/state/", "/v2/project/")):
        return "voiceflow"
    if path == "/v2/agents" or path.startswith("/v2/agents/"):
        return "vectara"
    if path.startswith(("/v1/", "/ws/liveavatar/")) or path == "/v1":
        return "liveavatar"
    if path.startswith("/_emulator"):
        return "admin"
    return None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def voiceflow_error(
    status: int, data: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    now = time.time()
    body = {
        "code": status,
        "status": _phrase(status),
        "dateTime": datetime.fromtimestamp(now, timezone.utc).isoformat().replace("+00:00", "Z"),
        "timestamp": int(now * 1000),
        "data": data if data is not None else _phrase(status),
    }
    return JSONResponse(body, status_code=status, headers=headers)


def vectara_error(
    status: int,
    *messages: str,
    field_errors: dict[str, str] | None = None,
    missing_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "messages": list(messages) or [_phrase(status)],
        "request_id": str(uuid.uuid4()),
    }
    if field_errors:
        body["field_errors"] = field_errors
    if missing_id is not None:
        body["id"] = missing_id
    return JSONResponse(body, status_code=status, headers=headers)


def liveavatar_error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    # Undocumented beyond {code, data, message}; `code` carries the HTTP status.
    body = {"code": status, "data": None, "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def provider_error(
    provider: Provider | None, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in the envelope of whichever provider owns the request."""
    if provider == "voiceflow":
        return voiceflow_error(status, message, headers)
    if provider == "vectara":
        return vectara_error(status, message, headers=headers)
    if provider == "liveavatar":
        return liveavatar_error(status, message, headers)
    return JSONResponse({"detail": message}, status_code=status, headers=headers)
