"""How LiveAvatar's error answers read: ``{code, data, message}``, and FastAPI's 422
``{detail: [{loc, msg, type}]}`` for a body that does not fit the OpenAPI."""

from __future__ import annotations

from prefect_sessions.http.envelope import JsonEnvelope

ENVELOPE = JsonEnvelope(
    message_keys=("message", "detail", "data", "error"),
    request_id_keys=("request_id",),
    validation_detail=True,
)
