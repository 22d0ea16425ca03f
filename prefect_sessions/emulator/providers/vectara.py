"""Vectara Agents (REST API v2): agents, sessions and events, JSON and ``data:``-only SSE.

Contracts: ``providers.md`` section 3 and ``vectara-agents.openapi.yaml``. Auth is ``x-api-key``
(or an OAuth2 bearer token); errors are ``{messages, request_id}`` with ``field_errors`` on 400
and ``id`` on 404. The scripted agent is listed as an agent and answers in every session.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from prefect_sessions.emulator.agent import AgentScript, split_for_streaming
from prefect_sessions.emulator.api import EmulatedAPI, bearer_or_api_key
from prefect_sessions.emulator.context import emulator_state
from prefect_sessions.emulator.errors import phrase

_KEY = re.compile(r"^[0-9a-zA-Z_-]{1,50}$")


def vectara_error(
    status: int,
    *messages: str,
    field_errors: dict[str, str] | None = None,
    missing_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "messages": list(messages) or [phrase(status)],
        "request_id": str(uuid.uuid4()),
    }
    if field_errors:
        body["field_errors"] = field_errors
    if missing_id is not None:
        body["id"] = missing_id
    return JSONResponse(body, status_code=status, headers=headers)


class VectaraHTTPError(Exception):
    """Answer with Vectara's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field_errors: dict[str, str] | None = None,
        missing_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field_errors = field_errors
        self.missing_id = missing_id


def _bad(field: str, message: str) -> VectaraHTTPError:
    return VectaraHTTPError(400, f"{field}: {message}", field_errors={field: message})


class VectaraStore:
    """Agents, sessions and events in memory; the scripted agent is created at start."""

    def __init__(self, agent: AgentScript, clock: Callable[[], float]) -> None:
        self.script = agent
        self.clock = clock
        self.agents: dict[str, dict[str, Any]] = {}
        self.sessions: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.variables: dict[tuple[str, str], dict[str, Any]] = {}
        now = self.now()
        self.agents[agent.key] = {
            "key": agent.key,
            "name": agent.name,
            "description": agent.description,
            "tool_configurations": {},
            "model": {"name": "gpt-4o", "parameters": {"temperature": 0}},
            "first_step": {
                "type": "conversational",
                "instructions": [
                    {
                        "type": "inline",
                        "name": "scripted",
                        "template": "Answer as the emulator's scripted agent.",
                    }
                ],
                "output_parser": {"type": "default"},
            },
            "metadata": {"emulated": True},
            "enabled": True,
            "created_at": now,
            "updated_at": now,
        }

    def now(self) -> str:
        moment = datetime.fromtimestamp(self.clock(), timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def agent(self, agent_key: str) -> dict[str, Any]:
        agent = self.agents.get(agent_key)
        if agent is None:
            raise VectaraHTTPError(
                404, f"agent_not_found: no agent with key '{agent_key}'", missing_id=agent_key
            )
        return agent

    def session(self, agent_key: str, session_key: str) -> dict[str, Any]:
        self.agent(agent_key)
        session = self.sessions.get((agent_key, session_key))
        if session is None:
            raise VectaraHTTPError(
                404,
                f"session_not_found: no session '{session_key}' for agent '{agent_key}'",
                missing_id=session_key,
            )
        return session


# -- request helpers ----------------------------------------------------------------------------


def _authenticate(request: Request) -> None:
    key = request.headers.get("x-api-key")
    if key is None:
        authorization = request.headers.get("authorization", "")
        key = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
    if not key:
        raise VectaraHTTPError(401, "unauthorized: send your API key in the x-api-key header")
    if not emulator_state(request).key_accepted(key):
        raise VectaraHTTPError(401, "unauthorized: the API key is not valid")


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        raise VectaraHTTPError(400, "invalid_request: the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise VectaraHTTPError(400, "invalid_request: the body must be a JSON object")
    return body


def _check(body: dict[str, Any], field: str, kind: type, noun: str) -> None:
    if field in body and not isinstance(body[field], kind):
        raise _bad(field, f"must be {noun}")


def _check_common(body: dict[str, Any]) -> None:
    _check(body, "name", str, "a string")
    _check(body, "description", str, "a string")
    _check(body, "metadata", dict, "an object")
    _check(body, "enabled", bool, "a boolean")
    if "name" in body and not body["name"]:
        raise _bad("name", "must not be empty")


def _check_agent(body: dict[str, Any], *, required: bool) -> None:
    if required:
        for field in ("name", "tool_configurations", "model", "first_step"):
            if field not in body:
                raise _bad(field, "is required")
    _check_common(body)
    if "name" in body and len(body["name"]) > 50:
        raise _bad("name", "must be at most 50 characters")
    _check(body, "tool_configurations", dict, "an object")
    _check(body, "model", dict, "an object")
    _check(body, "first_step", dict, "an object")
    if "model" in body and not isinstance(body["model"].get("name"), str):
        raise _bad("model.name", "is required")
    if "first_step" in body and not isinstance(body["first_step"].get("instructions"), list):
        raise _bad("first_step.instructions", "is required")


def _check_session(body: dict[str, Any]) -> None:
    _check_common(body)
    if "tti_minutes" in body:
        tti = body["tti_minutes"]
        if not isinstance(tti, int) or isinstance(tti, bool) or tti < 0:
            raise _bad("tti_minutes", "must be an integer of at least 0")


def _new_key(prefix: str, name: str) -> str:
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()[:30]
    return f"{prefix}_{slug + '_' if slug else ''}{secrets.token_hex(4)}"


def _page(items: list[dict[str, Any]], request: Request, name: str) -> dict[str, Any]:
    """Cursor pagination: ``page_key`` is an opaque offset; an unknown one gives an empty page."""
    try:
        limit = int(request.query_params.get("limit", "10"))
    except ValueError:
        raise _bad("limit", "must be an integer from 1 to 100") from None
    if not 1 <= limit <= 100:
        raise _bad("limit", "must be an integer from 1 to 100")
    start = 0
    page_key = request.query_params.get("page_key")
    if page_key:
        try:
            start = int(base64.urlsafe_b64decode(page_key.encode() + b"==").decode())
        except ValueError:
            start = len(items)
    chunk = items[start : start + limit]
    metadata: dict[str, str] = {}
    if start + limit < len(items):
        metadata["page_key"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
    return {name: chunk, "metadata": metadata}


def _filtered(items: list[dict[str, Any]], pattern: str | None) -> list[dict[str, Any]]:
    if not pattern:
        return items
    try:
        regex = re.compile(pattern)
        matches: Callable[[str], bool] = lambda text: regex.search(text) is not None  # noqa: E731
    except re.error:
        matches = lambda text: pattern in text  # noqa: E731
    return [
        item
        for item in items
        if matches(str(item.get("name", ""))) or matches(str(item.get("description", "")))
    ]


async def _input_message(request: Request) -> tuple[list[dict[str, Any]], bool]:
    """The input messages and ``stream_response`` from a JSON or multipart body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        raw = await request.body()
        parsed = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        fields: dict[str, str] = {}
        for part in parsed.iter_parts() if parsed.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str) and part.get_filename() is None:
                payload = part.get_payload(decode=True)
                fields[name] = (
                    payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
                )
        if "message" not in fields:
            raise _bad("message", "is required")
        stream = fields.get("stream_response", "false").strip().lower() == "true"
        return [{"type": "text", "content": fields["message"]}], stream
    body = await _json_object(request)
    if body.get("type", "input_message") != "input_message":
        raise _bad("type", "must be 'input_message'")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty array of {type: 'text', content}")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise _bad(f"messages[{index}].content", "must be a string")
        if message.get("type", "text") != "text":
            raise _bad(f"messages[{index}].type", "must be 'text'")
    stream = body.get("stream_response", False)
    if not isinstance(stream, bool):
        raise _bad("stream_response", "must be a boolean")
    return [{"type": "text", "content": m["content"]} for m in messages], stream


def _event(store: VectaraStore, session_key: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"aev_{secrets.token_hex(8)}",
        "type": kind,
        "session_key": session_key,
        **fields,
        "created_at": store.now(),
    }


# -- routes -------------------------------------------------------------------------------------


async def create_agent(request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    body = await _json_object(request)
    _check_agent(body, required=True)
    key = body.get("key") or _new_key("agt", body["name"])
    if not isinstance(key, str) or not _KEY.match(key):
        raise _bad("key", "must be 1 to 50 letters, digits, '_' or '-'")
    if key in store.agents:
        raise _bad("key", f"an agent with key '{key}' already exists")
    now = store.now()
    agent = {"metadata": {}, "enabled": True, **body, "key": key}
    agent.update(created_at=now, updated_at=now)
    store.agents[key] = agent
    return JSONResponse(agent, status_code=201)


async def list_agents(request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    agents = _filtered(list(store.agents.values()), request.query_params.get("filter"))
    enabled = request.query_params.get("enabled")
    if enabled in ("true", "false"):
        agents = [a for a in agents if a["enabled"] is (enabled == "true")]
    return JSONResponse(_page(agents, request, "agents"))


async def get_agent(agent_key: str, request: Request) -> Response:
    _authenticate(request)
    return JSONResponse(emulator_state(request).vectara.agent(agent_key))


async def update_agent(agent_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    agent = store.agent(agent_key)
    body = await _json_object(request)
    _check_agent(body, required=False)
    allowed = ("name", "description", "tool_configurations", "model", "first_step")
    agent.update({k: v for k, v in body.items() if k in (*allowed, "metadata", "enabled")})
    agent["updated_at"] = store.now()
    return JSONResponse(agent)


async def replace_agent(agent_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    old = store.agent(agent_key)
    body = await _json_object(request)
    _check_agent(body, required=True)
    body.pop("key", None)
    agent = {"metadata": {}, "enabled": True, **body, "key": agent_key}
    agent.update(created_at=old["created_at"], updated_at=store.now())
    store.agents[agent_key] = agent
    return JSONResponse(agent)


async def delete_agent(agent_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    store.agent(agent_key)
    del store.agents[agent_key]
    for key in [k for k in store.sessions if k[0] == agent_key]:
        store.sessions.pop(key)
        store.events.pop(key, None)
    return Response(status_code=204)


async def create_session(agent_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    store.agent(agent_key)
    body = await _json_object(request)
    _check_session(body)
    if not body.get("name"):
        raise _bad("name", "is required")
    key = body.get("key") or _new_key("ase", body["name"])
    if not isinstance(key, str) or not _KEY.match(key):
        raise _bad("key", "must be 1 to 50 letters, digits, '_' or '-'")
    if (agent_key, key) in store.sessions:
        raise _bad("key", f"a session with key '{key}' already exists")
    session = {
        "key": key,
        "agent_key": agent_key,
        "name": body["name"],
        "metadata": body.get("metadata", {}),
        "enabled": body.get("enabled", True),
        "tti_minutes": body.get("tti_minutes", 0),
        "created_at": store.now(),
    }
    if "description" in body:
        session["description"] = body["description"]
    store.sessions[(agent_key, key)] = session
    store.events[(agent_key, key)] = []
    store.variables[(agent_key, key)] = store.script.initial_variables()
    return JSONResponse(session, status_code=201)


async def list_sessions(agent_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    store.agent(agent_key)
    sessions = [s for (a, _), s in store.sessions.items() if a == agent_key]
    sessions = _filtered(sessions, request.query_params.get("filter"))
    return JSONResponse(_page(sessions, request, "sessions"))


async def get_session(agent_key: str, session_key: str, request: Request) -> Response:
    _authenticate(request)
    return JSONResponse(emulator_state(request).vectara.session(agent_key, session_key))


async def update_session(agent_key: str, session_key: str, request: Request) -> Response:
    _authenticate(request)
    session = emulator_state(request).vectara.session(agent_key, session_key)
    body = await _json_object(request)
    _check_session(body)
    fields = ("name", "description", "metadata", "enabled", "tti_minutes")
    session.update({k: v for k, v in body.items() if k in fields})
    return JSONResponse(session)


async def delete_session(agent_key: str, session_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    store.session(agent_key, session_key)
    for table in (store.sessions, store.events, store.variables):
        table.pop((agent_key, session_key), None)
    return Response(status_code=204)


async def create_input(agent_key: str, session_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    agent = store.agent(agent_key)
    session = store.session(agent_key, session_key)
    messages, stream = await _input_message(request)
    if not agent["enabled"] or not session["enabled"]:
        raise VectaraHTTPError(400, "invalid_request: this agent or session is disabled")
    variables = store.variables.setdefault((agent_key, session_key), {})
    text = " ".join(m["content"] for m in messages)
    turn = store.script.respond(text, variables)
    variables.update(turn.variables)
    received = _event(store, session_key, "input_message", messages=messages)
    answer = _event(store, session_key, "agent_output", content=turn.text)
    store.events[(agent_key, session_key)].extend([received, answer])
    if not stream:
        body = {"session_key": session_key, "events": [received, answer]}
        return JSONResponse(body, status_code=201)
    return StreamingResponse(
        _stream(store, turn.text),
        status_code=201,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def list_events(agent_key: str, session_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    store.session(agent_key, session_key)
    events = store.events.get((agent_key, session_key), [])
    return JSONResponse(_page(events, request, "events"))


async def get_event(agent_key: str, session_key: str, event_id: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    store.session(agent_key, session_key)
    for event in store.events.get((agent_key, session_key), []):
        if event["id"] == event_id:
            return JSONResponse(event)
    raise VectaraHTTPError(404, f"event_not_found: no event '{event_id}'", missing_id=event_id)


async def list_artifacts(agent_key: str, session_key: str, request: Request) -> Response:
    _authenticate(request)
    emulator_state(request).vectara.session(agent_key, session_key)
    return JSONResponse(_page([], request, "artifacts"))


async def get_artifact(
    agent_key: str, session_key: str, artifact_id: str, request: Request
) -> Response:
    _authenticate(request)
    emulator_state(request).vectara.session(agent_key, session_key)
    raise VectaraHTTPError(
        404, f"artifact_not_found: no artifact '{artifact_id}'", missing_id=artifact_id
    )


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v2/agents")
    router.add_api_route("", create_agent, methods=["POST"])
    router.add_api_route("", list_agents, methods=["GET"])
    router.add_api_route("/{agent_key}", get_agent, methods=["GET"])
    router.add_api_route("/{agent_key}", update_agent, methods=["PATCH"])
    router.add_api_route("/{agent_key}", replace_agent, methods=["PUT"])
    router.add_api_route("/{agent_key}", delete_agent, methods=["DELETE"])
    router.add_api_route("/{agent_key}/sessions", create_session, methods=["POST"])
    router.add_api_route("/{agent_key}/sessions", list_sessions, methods=["GET"])
    router.add_api_route("/{agent_key}/sessions/{session_key}", get_session, methods=["GET"])
    router.add_api_route("/{agent_key}/sessions/{session_key}", update_session, methods=["PATCH"])
    router.add_api_route("/{agent_key}/sessions/{session_key}", delete_session, methods=["DELETE"])
    router.add_api_route(
        "/{agent_key}/sessions/{session_key}/events", create_input, methods=["POST"]
    )
    router.add_api_route("/{agent_key}/sessions/{session_key}/events", list_events, methods=["GET"])
    router.add_api_route(
        "/{agent_key}/sessions/{session_key}/events/{event_id}", get_event, methods=["GET"]
    )
    router.add_api_route(
        "/{agent_key}/sessions/{session_key}/artifacts", list_artifacts, methods=["GET"]
    )
    router.add_api_route(
        "/{agent_key}/sessions/{session_key}/artifacts/{artifact_id}", get_artifact, methods=["GET"]
    )
    return router


async def _stream(store: VectaraStore, text: str) -> AsyncIterator[bytes]:
    """``data:``-only frames: output pieces, their end, then the terminal ``end``."""
    for piece in split_for_streaming(text):
        yield _frame(
            {"type": "streaming_agent_output", "content": piece, "created_at": store.now()}
        )
    yield _frame({"type": "streaming_agent_output_end", "created_at": store.now()})
    yield _frame({"type": "end"})


def _frame(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, VectaraHTTPError)
    return vectara_error(
        exc.status, exc.message, field_errors=exc.field_errors, missing_id=exc.missing_id
    )


def exception_handlers() -> dict[type[Exception], Callable[[Request, Exception], Response]]:
    return {VectaraHTTPError: _error_handler}


API = EmulatedAPI(
    name="vectara",
    title="Vectara Agents",
    prefixes=("/v2/agents/",),
    exact=("/v2/agents",),
    error=lambda status, message, headers: vectara_error(status, message, headers=headers),
    routers=lambda: [build_router()],
    exception_handlers=exception_handlers,
    new_store=lambda agent, clock: VectaraStore(agent, clock),
    default_limit="inflight=5",
    limit_help=(
        "default inflight=5: a bare 429 ('too many concurrent requests') past 5 requests in "
        "flight per API key; the vendor documents no numbers and no headers"
    ),
    caller_key=bearer_or_api_key,
    publish="none",  # "429 rate_limit_exceeded", no numbers, no headers
    scope="key",
    rate_limited_message="rate_limit_exceeded: too many requests for this API key, retry later",
    too_many_concurrent_message="Too many concurrent requests",
)
