"""Reading a provider's error body into the package's typed errors.

The three providers' envelopes, all handled by one reader:
- Voiceflow: ``{code, status, dateTime, timestamp, data}``, legacy ``{name, message, requestID}``;
- Vectara: ``{messages: [...], request_id, field_errors: {...}, id}``;
- LiveAvatar: ``{code, data, message}`` and FastAPI's 422 ``{detail: [{loc, msg, type}]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

_MAX_MESSAGE = 500


@dataclass(frozen=True)
class ErrorBody:
    """What a provider said about a failure."""

    message: str | None = None
    request_id: str | None = None
    field_errors: dict[str, str] = field(default_factory=dict)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        joined = "; ".join(t for t in (_text(item) for item in value) if t)
        return joined or None
    if isinstance(value, dict):
        for key in ("message", "msg", "error", "detail"):
            if key in value:
                return _text(value[key])
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _fastapi_field_errors(detail: list[Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for item in detail:
        if not isinstance(item, dict):
            continue
        loc = item.get("loc") or []
        path = ".".join(str(part) for part in loc if part not in ("body", "query", "path"))
        errors[path or "request"] = str(item.get("msg", "invalid"))
    return errors


def read_error_body(response: httpx.Response) -> ErrorBody:
    """Extract the message, request ID and field errors from any of the providers' envelopes."""
    try:
        payload = json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        text = response.content[:_MAX_MESSAGE].decode("utf-8", errors="replace").strip()
        return ErrorBody(message=text or None)
    if not isinstance(payload, dict):
        return ErrorBody(message=_text(payload))
    request_id = payload.get("request_id") or payload.get("requestID") or payload.get("requestId")
    field_errors: dict[str, str] = {}
    raw_fields = payload.get("field_errors")
    if isinstance(raw_fields, dict):
        field_errors = {str(k): str(v) for k, v in raw_fields.items()}
    detail = payload.get("detail")
    if isinstance(detail, list):
        field_errors = {**field_errors, **_fastapi_field_errors(detail)}
    message = None
    for key in ("messages", "message", "detail", "data", "error", "status"):
        if key in payload and not (key == "detail" and isinstance(detail, list)):
            message = _text(payload[key])
            if message:
                break
    if message is None and field_errors:
        message = "invalid request"
    return ErrorBody(
        message=message[:_MAX_MESSAGE] if message else None,
        request_id=str(request_id) if request_id else None,
        field_errors=field_errors,
    )
