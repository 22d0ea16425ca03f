"""Voiceflow's transcripts: the Analytics API that replaced the old system on 2025-07-28, and the
legacy transcripts API kept for projects that still have it (``conversations-and-models.md``
section 1).

Filled from the conversations the emulator's Voiceflow runtime has seen, so ``record`` can be
tried end to end offline. As the vendor:

- search (``POST /v1/transcript/project/{projectID}``) pages with ``take`` (default 25, at most
  100) and ``skip``, newest first unless ``order=ASC``, filtered by ``startDate``, ``endDate``,
  ``sessionID``, ``environmentID`` and property ``filters``;
- one transcript (``GET /v1/transcript/{transcriptID}``) carries ``logs[]`` whose ``data`` is a
  JSON **string**, as the docs' own example shows; text is redacted unless ``unredacted=true``;
- a project made before the new system (``legacy_projects``) is not in the Analytics API (404);
  its transcripts are read from ``GET /v2/transcripts/{projectID}`` and one dialog from
  ``GET /v2/transcripts/{projectID}/{transcriptID}`` with ``limit`` (1 to 1000) and ``offset``.

Its limit is not published: the default is a fixed window with no headers at all, so a client
must find it by its 429s (the limit itself is inferred, not documented).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from prefect_sessions.emulator.api import EmulatedAPI
from prefect_sessions.emulator.context import emulator_state
from prefect_sessions.emulator.providers.voiceflow import (
    Transcript,
    VoiceflowHTTPError,
    _iso,
    voiceflow_error,
)

MAX_TAKE = 100
DEFAULT_TAKE = 25

#: What the vendor redacts by default (inferred: the docs name PII, not the patterns).
_REDACTIONS = (
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[EMAIL]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[CARD]"),
    (re.compile(r"(?:\+\d{1,3}[ -]?)?\(?\d{3}\)?[ -]\d{3}[ -]\d{4}\b"), "[PHONE]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    return value


def _key(request: Request) -> str:
    state = emulator_state(request)
    key = request.headers.get("authorization", "")
    if not key:
        raise VoiceflowHTTPError(401, "Auth Key Required")
    if not state.key_accepted(key):
        raise VoiceflowHTTPError(401, "Invalid API key")
    return key


def _summary(transcript: Transcript) -> dict[str, Any]:
    return {
        "id": transcript.id,
        "userID": transcript.session_id,
        "sessionID": transcript.session_id,
        "projectID": transcript.project_id,
        "environmentID": transcript.environment_id,
        "createdAt": _iso(transcript.created),
        "updatedAt": _iso(transcript.updated),
        "expiresAt": _iso(transcript.created + 30 * 86400),
        "endedAt": None,
        "recordingURL": None,
        "properties": transcript.properties,
        "evaluations": [],
    }


def _date(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise VoiceflowHTTPError(400, f"{name} must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise VoiceflowHTTPError(400, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise VoiceflowHTTPError(400, f"{name} must be between {low} and {high}")
    return value


def _matches_filter(transcript: Transcript, rule: Any) -> bool:
    if not isinstance(rule, dict) or "id" not in rule:
        raise VoiceflowHTTPError(400, "each filter is an object with id, op and value")
    op, value = rule.get("op", "eq"), rule.get("value")
    values = [p.get("value") for p in transcript.properties if p.get("id") == rule["id"]]
    if op == "eq":
        return value in values
    if op == "neq":
        return value not in values
    return bool(values)


async def search(projectID: str, request: Request) -> Response:
    _key(request)
    state = emulator_state(request)
    if projectID in state.voiceflow.legacy_projects:
        raise VoiceflowHTTPError(404, f"Project {projectID} has no transcripts in Analytics")
    take = _int(request, "take", DEFAULT_TAKE, 1, MAX_TAKE)
    skip = _int(request, "skip", 0, 0, 10**9)
    order = request.query_params.get("order", "DESC").upper()
    if order not in ("ASC", "DESC"):
        raise VoiceflowHTTPError(400, "order must be ASC or DESC")
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise VoiceflowHTTPError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise VoiceflowHTTPError(400, "Request body must be a JSON object")
    start, end = _date(body.get("startDate"), "startDate"), _date(body.get("endDate"), "endDate")
    # `environmentID` in the reference the client follows; a later copy of the docs names it
    # `projectEnvironmentIDOrAlias`: both are taken.
    environment = body.get("environmentID", body.get("projectEnvironmentIDOrAlias"))
    filters = body.get("filters") or []
    if not isinstance(filters, list):
        raise VoiceflowHTTPError(400, "filters must be an array")
    found = [
        t
        for t in state.voiceflow.transcripts.values()
        if t.project_id == projectID
        and t.has_logs
        and (start is None or t.created >= start)
        and (end is None or t.created <= end)
        and body.get("sessionID") in (None, t.session_id)
        and environment in (None, t.environment_id)
        and all(_matches_filter(t, rule) for rule in filters)
    ]
    found.sort(key=lambda t: (t.created, t.id), reverse=order == "DESC")
    return JSONResponse({"transcripts": [_summary(t) for t in found[skip : skip + take]]})


def _transcript(request: Request, transcript_id: str) -> Transcript:
    _key(request)
    found: Transcript | None = emulator_state(request).voiceflow.transcripts.get(transcript_id)
    if found is None:
        raise VoiceflowHTTPError(404, f"Transcript {transcript_id} not found")
    return found


def _entry_data(data: dict[str, Any] | str, unredacted: bool) -> str:
    """An entry's ``data`` as the API sends it: JSON text (a raw entry as it was kept)."""
    if isinstance(data, str):
        return data
    return json.dumps(data if unredacted else _redacted(data), separators=(",", ":"))


async def get_transcript(transcriptID: str, request: Request) -> Response:
    transcript = _transcript(request, transcriptID)
    unredacted = request.query_params.get("unredacted") == "true"
    logs = [
        {
            "type": kind,
            "data": _entry_data(data, unredacted),
            "createdAt": _iso(at),
            "updatedAt": _iso(at),
        }
        for kind, data, at in transcript.entries()
    ]
    return JSONResponse({"transcript": {**_summary(transcript), "history": [], "logs": logs}})


# -- the legacy transcripts API ------------------------------------------------------------------


async def legacy_list(projectID: str, request: Request) -> Response:
    _key(request)
    state = emulator_state(request)
    tag = request.query_params.get("tag")
    start = _date(request.query_params.get("startDate"), "startDate")
    end = _date(request.query_params.get("endDate"), "endDate")
    found = [
        t
        for t in reversed(state.voiceflow.transcripts.values())
        if t.project_id == projectID
        and t.has_logs
        and (start is None or t.created >= start)
        and (end is None or t.created <= end)
        and (tag is None or any(p.get("value") == tag for p in t.properties))
    ]
    return JSONResponse(
        [
            {
                "_id": t.id,
                "projectID": t.project_id,
                "sessionID": t.session_id,
                "createdAt": _iso(t.created),
                "updatedAt": _iso(t.updated),
                "reportTags": [p.get("value") for p in t.properties],
            }
            for t in found
        ]
    )


async def legacy_dialog(projectID: str, transcriptID: str, request: Request) -> Response:
    transcript = _transcript(request, transcriptID)
    if transcript.project_id != projectID:
        raise VoiceflowHTTPError(404, f"Transcript {transcriptID} not found")
    limit = _int(request, "limit", 100, 1, 1000)
    offset = _int(request, "offset", 0, 0, 10**9)
    turns = []
    turn_id = ""
    for number, (kind, data, at) in enumerate(transcript.entries()):
        entry = data if isinstance(data, dict) else {"type": "unknown", "payload": data}
        if kind == "action":
            turn_id = f"{transcript.id}-{number}"
            form = "launch" if entry.get("type") == "launch" else "request"
        else:
            form = "trace"
        turns.append(
            {
                "turnID": turn_id,
                "format": form,
                "type": entry.get("type"),
                "payload": _redacted(entry) if form == "request" else entry,
                "startTime": _iso(at),
            }
        )
    return JSONResponse(turns[offset : offset + limit])


def build_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route("/v1/transcript/project/{projectID}", search, methods=["POST"])
    router.add_api_route("/v1/transcript/{transcriptID}", get_transcript, methods=["GET"])
    router.add_api_route("/v2/transcripts/{projectID}", legacy_list, methods=["GET"])
    router.add_api_route(
        "/v2/transcripts/{projectID}/{transcriptID}", legacy_dialog, methods=["GET"]
    )
    return router


API = EmulatedAPI(
    name="analytics",
    title="Voiceflow transcripts (Analytics API, legacy transcripts)",
    prefixes=("/v1/transcript/", "/v2/transcripts/"),
    error=lambda status, message, headers: voiceflow_error(status, message, headers),
    routers=lambda: [build_router()],
    exception_handlers=lambda: {},
    new_store=lambda agent, clock: None,
    default_limit="600/60s",
    limit_help="default 600/60s: Voiceflow's transcripts APIs publish no limit; no headers sent",
    caller_key=lambda headers, path, store: headers.get("authorization", ""),
    publish="none",
    scope="key",
    rate_limited_message="Too Many Requests",
)
