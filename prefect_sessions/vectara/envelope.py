"""How Vectara's error answers read: ``{messages: [...], request_id, field_errors: {...}, id}``."""

from __future__ import annotations

from prefect_sessions.http.envelope import JsonEnvelope

ENVELOPE = JsonEnvelope(
    message_keys=("messages", "message", "error"),
    request_id_keys=("request_id",),
    field_errors_key="field_errors",
)
