"""How Voiceflow's error answers read: ``{code, status, dateTime, timestamp, data}`` from the v4
runtime, ``{name, message, requestID}`` from the legacy routes."""

from __future__ import annotations

from prefect_sessions.http.envelope import JsonEnvelope

ENVELOPE = JsonEnvelope(
    message_keys=("message", "data", "error", "status"),
    request_id_keys=("requestID", "requestId", "request_id"),
)
