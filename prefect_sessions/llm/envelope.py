"""How an OpenAI-compatible endpoint's error answers read:
``{"error": {"message", "type", "param", "code"}}`` (OpenAI, Azure OpenAI, vLLM, LiteLLM), or
``{"error": "..."}`` (Ollama), or FastAPI's ``{"detail": ...}`` (a bare vLLM route)."""

from __future__ import annotations

from prefect_sessions.http.envelope import JsonEnvelope

ENVELOPE = JsonEnvelope(
    message_keys=("error", "message", "detail"),
    request_id_keys=("request_id", "id"),
    validation_detail=True,
)
