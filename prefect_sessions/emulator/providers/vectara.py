"""Vectara Agents (REST API v2): agents, sessions and events, JSON and ``data:``-only SSE.

Contracts: ``providers.md`` section 3 and ``vectara-agents.openapi.yaml``. Auth is ``x-api-key``
(or an OAuth2 bearer token); errors are ``{messages, request_id}`` with ``field_errors`` on 400
and ``id`` on 404. The scripted agent is listed as an agent and answers in every session.
"""

from __future__ import annotations

import asyncio
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
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from prefect_sessions.emulator.agent import AgentScript, split_for_streaming
from prefect_sessions.emulator.api import DEFERRED_LATENCY, EmulatedAPI, bearer_or_api_key
from prefect_sessions.emulator.context import emulator_state
from prefect_sessions.emulator.errors import phrase
from prefect_sessions.emulator.providers.metadata_filter import FilterSyntaxError, compile_filter

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
        #: OAuth access tokens issued by ``/oauth2/token``, and when each expires (clock time).
        self.tokens: dict[str, float] = {}
        #: Seconds the scripted agent takes to answer, when set (a request's
        #: X-Emulator-Answer-Ms wins; unset: the emulator's ``vectara_think_ms``).
        self.answer_seconds: float | None = None
        #: Sessions whose agent is answering now, each with an event set when it stops.
        self.running: dict[tuple[str, str], asyncio.Event] = {}
        #: Sessions an ``interrupt`` input asked to stop answering.
        self.interrupted: set[tuple[str, str]] = set()
        #: Event IDs compaction hid (listed only with ``include_hidden=true``).
        self.hidden: set[str] = set()
        now = self.now()
        self.agents[agent.key] = {
            "key": agent.key,
            "name": agent.name,
            "description": agent.description,
            "tool_configurations": {},
            "model": {"name": "gpt-4o", "parameters": {"temperature": 0}},
            "first_step": {
                "name": "first_step",
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
        store: VectaraStore = emulator_state(request).vectara
        expires = store.tokens.get(key)
        if expires is not None:
            if store.clock() >= expires:
                raise VectaraHTTPError(401, "unauthorized: the access token has expired")
            return
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


#: The fields an agent body may set (Vectara's ``CreateAgentRequest``); others are not stored.
_AGENT_FIELDS = (
    "key",
    "name",
    "description",
    "tool_configurations",
    "model",
    "first_step",
    "first_step_name",
    "steps",
    "metadata",
    "enabled",
    "skills",
    "compaction",
    "tool_output_offloading",
)
#: Each tool-configuration type in ``AgentToolConfiguration``'s discriminator, with the fields
#: its schema requires besides ``type``.
_TOOL_TYPES: dict[str, tuple[str, ...]] = {
    "reference": ("tool_configuration_key",),
    "dynamic_vectara": (),
    "mcp": (),
    "corpora_search": ("query_configuration",),
    "web_search": (),
    "web_get": (),
    "lambda": (),
    "client": ("tool_id",),
    "sub_agent": ("sub_agent_configuration",),
    "artifact_read": (),
    "artifact_grep": (),
    "image_read": (),
    "document_conversion": (),
    "get_document_text": (),
}


def _check_tools(tools: dict[str, Any]) -> None:
    for name, tool in tools.items():
        where = f"tool_configurations.{name}"
        if tool is None:  # the schema's values are nullable
            continue
        if not isinstance(tool, dict):
            raise _bad(where, "must be an object with a 'type'")
        kind = tool.get("type")
        if not isinstance(kind, str) or kind not in _TOOL_TYPES:
            raise _bad(f"{where}.type", f"must be one of {', '.join(sorted(_TOOL_TYPES))}")
        for field in _TOOL_TYPES[kind]:
            if field not in tool:
                raise _bad(f"{where}.{field}", f"is required for a '{kind}' tool")


def _without_nulls(value: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _without_nulls(item) if isinstance(item, dict) else item
        for key, item in value.items()
        if item is not None
    }


def _check_agent(body: dict[str, Any], *, required: bool) -> dict[str, Any]:
    """The agent fields of a create, replace or update body, checked."""
    body = {field: body[field] for field in _AGENT_FIELDS if field in body}
    if required:  # a null in a new agent is the field left out
        body = {field: value for field, value in body.items() if value is not None}
        for field in ("name", "tool_configurations", "model"):
            if field not in body:
                raise _bad(field, "is required")
        if "first_step" not in body and "first_step_name" not in body:
            raise _bad("first_step", "is required unless steps and first_step_name are given")
    _check_common(body)
    if "name" in body and len(body["name"]) > 50:
        raise _bad("name", "must be at most 50 characters")
    _check(body, "tool_configurations", dict, "an object")
    _check(body, "model", dict, "an object")
    _check(body, "first_step", dict, "an object")
    _check(body, "steps", dict, "an object")
    _check(body, "first_step_name", str, "a string")
    # A null inside a step is the setting left out: the vendor's stored steps have none.
    if isinstance(body.get("first_step"), dict):
        body["first_step"] = _without_nulls(body["first_step"])
    if isinstance(body.get("steps"), dict):
        body["steps"] = {
            name: _without_nulls(step) if isinstance(step, dict) else step
            for name, step in body["steps"].items()
        }
    _check_tools(body.get("tool_configurations") or {})
    if "model" in body and not isinstance(body["model"].get("name"), str):
        raise _bad("model.name", "is required")
    steps = body.get("steps") or {}
    if "first_step_name" in body and body["first_step_name"] not in steps:
        raise _bad("first_step_name", "must name one of the agent's steps")
    for where, step in [("first_step", body.get("first_step")), *steps.items()]:
        field = where if where == "first_step" else f"steps.{where}"
        if step is None:
            continue
        if not isinstance(step, dict) or not isinstance(step.get("instructions"), list):
            raise _bad(f"{field}.instructions", "must be a list: a step needs instructions")
        name = step.get("name", where)
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise _bad(f"{field}.name", "must be 1 to 255 characters")
        _check_output_parser(step.get("output_parser"), f"{field}.output_parser")
    return body


def _check_output_parser(parser: Any, field: str) -> None:
    """``default``, or ``structured`` with a ``json_schema`` of a ``name`` and a ``schema``."""
    if parser is None:
        return
    if not isinstance(parser, dict) or parser.get("type") not in ("default", "structured"):
        raise _bad(f"{field}.type", "must be 'default' or 'structured'")
    if parser["type"] == "default":
        return
    spec = parser.get("json_schema")
    if not isinstance(spec, dict):
        raise _bad(f"{field}.json_schema", "is required for a 'structured' output parser")
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_-]+", name):
        raise _bad(f"{field}.json_schema.name", "must be letters, digits, '_' and '-'")
    if not isinstance(spec.get("schema"), dict):
        raise _bad(f"{field}.json_schema.schema", "must be a JSON Schema object")


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


_SINCE = re.compile(r"^(start|aev_[0-9a-zA-Z_-]+)$")
_INPUT_TYPES = ("input_message", "interrupt", "compact", "tool_output")


async def _input(request: Request) -> dict[str, Any]:
    """Any input (``CreateInputRequest``): its ``type``, ``stream``, and for a message its
    ``messages``, ``since`` and ``behavior``."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        messages, stream = await _input_message(request)
        return {"type": "input_message", "messages": messages, "stream": stream}
    body = await _json_object(request)
    kind = body.get("type", "input_message")
    if kind not in _INPUT_TYPES:
        raise _bad("type", f"must be one of {', '.join(_INPUT_TYPES)}")
    stream = body.get("stream_response", False)
    if not isinstance(stream, bool):
        raise _bad("stream_response", "must be a boolean")
    given: dict[str, Any] = {"type": kind, "stream": stream}
    if kind == "tool_output":
        outputs = body.get("tool_outputs")
        if not isinstance(outputs, list) or not outputs:
            raise _bad("tool_outputs", "must be a non-empty array")
    if kind != "input_message":
        return given
    messages = _messages_of(body)
    since, behavior = body.get("since"), body.get("behavior")
    if since is not None and (not isinstance(since, str) or not _SINCE.match(since)):
        raise _bad("since", "must be 'start' or an event ID (aev_...)")
    if behavior is not None and behavior not in ("steer", "follow_up"):
        raise _bad("behavior", "must be 'steer' or 'follow_up'")
    return {**given, "messages": messages, "since": since, "behavior": behavior}


async def _input_message(request: Request) -> tuple[list[dict[str, Any]], bool]:
    """The input message and ``stream_response`` of a multipart body (a file upload's)."""
    content_type = request.headers.get("content-type", "")
    raw = await request.body()
    parsed = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, str] = {}
    for part in parsed.iter_parts() if parsed.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and part.get_filename() is None:
            payload = part.get_payload(decode=True)
            fields[name] = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if "message" not in fields:
        raise _bad("message", "is required")
    stream = fields.get("stream_response", "false").strip().lower() == "true"
    return [{"type": "text", "content": fields["message"]}], stream


def _messages_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A JSON message's text inputs, checked."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty array of {type: 'text', content}")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise _bad(f"messages[{index}].content", "must be a string")
        if message.get("type", "text") != "text":
            raise _bad(f"messages[{index}].type", "must be 'text'")
    return [{"type": "text", "content": m["content"]} for m in messages]


def _event(store: VectaraStore, session_key: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"aev_{secrets.token_hex(8)}",
        "type": kind,
        "session_key": session_key,
        **fields,
        "created_at": store.now(),
    }


# -- routes -------------------------------------------------------------------------------------


def _step_defaults(agent: dict[str, Any]) -> None:
    """What the vendor fills in an agent it stores: ``first_step`` from ``steps`` when only
    ``first_step_name`` was given, the step's ``name`` (its SDK requires one on every agent it
    reads) and its ``output_parser``."""
    name = agent.get("first_step_name")
    if "first_step" not in agent and isinstance(name, str):
        agent["first_step"] = {"name": name, **agent["steps"][name]}
    step = agent.get("first_step")
    if isinstance(step, dict):
        step.setdefault("name", "first_step")
        step.setdefault("output_parser", {"type": "default"})


async def create_agent(request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    body = _check_agent(await _json_object(request), required=True)
    key = body.get("key") or _new_key("agt", body["name"])
    if not isinstance(key, str) or not _KEY.match(key):
        raise _bad("key", "must be 1 to 50 letters, digits, '_' or '-'")
    if key in store.agents:
        raise _bad("key", f"an agent with key '{key}' already exists")
    now = store.now()
    agent = {"metadata": {}, "enabled": True, **body, "key": key}
    _step_defaults(agent)
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
    body = _check_agent(await _json_object(request), required=False)
    body.pop("key", None)
    for field, value in body.items():  # a null clears a nullable field (compaction, ...)
        if value is None:
            agent.pop(field, None)
        else:
            agent[field] = value
    _step_defaults(agent)
    agent["updated_at"] = store.now()
    return JSONResponse(agent)


async def replace_agent(agent_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    old = store.agent(agent_key)
    body = _check_agent(await _json_object(request), required=True)
    body.pop("key", None)
    agent = {"metadata": {}, "enabled": True, **body, "key": agent_key}
    _step_defaults(agent)
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
    parent = body.get("from_session")
    if parent is not None and (
        not isinstance(parent, str) or (agent_key, parent) not in store.sessions
    ):
        raise _bad("from_session", f"no session '{parent}' of agent '{agent_key}' to fork")
    session = {
        "key": key,
        "agent_key": agent_key,
        "name": body["name"],
        "metadata": body.get("metadata", {}),
        "enabled": body.get("enabled", True),
        "status": "unstarted",
        "tti_minutes": body.get("tti_minutes", 0),
        "created_at": store.now(),
    }
    if "description" in body:
        session["description"] = body["description"]
    store.sessions[(agent_key, key)] = session
    store.events[(agent_key, key)] = []
    store.variables[(agent_key, key)] = store.script.initial_variables()
    if parent is not None:  # a fork starts with the parent's history and variables
        history = store.events[(agent_key, parent)]
        store.events[(agent_key, key)] = [{**event, "session_key": key} for event in history]
        store.variables[(agent_key, key)] = dict(store.variables[(agent_key, parent)])
        session["status"] = "stopped" if history else "unstarted"
    return JSONResponse(session, status_code=201)


async def list_sessions(agent_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    store.agent(agent_key)
    sessions = [s for (a, _), s in store.sessions.items() if a == agent_key]
    sessions = _filtered(sessions, request.query_params.get("filter"))
    sessions = _metadata_filtered(sessions, request.query_params.get("metadata_filter"))
    return JSONResponse(_page(sessions, request, "sessions"))


def _metadata_filtered(items: list[dict[str, Any]], expression: str | None) -> list[dict[str, Any]]:
    """The items whose ``metadata`` matches Vectara's filter expression."""
    if not expression:
        return items
    try:
        matches = compile_filter(expression)
    except FilterSyntaxError as exc:
        raise _bad("metadata_filter", str(exc)) from None
    return [item for item in items if matches(item.get("metadata") or {})]


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


#: Milliseconds the scripted agent takes to answer when a request asks for it with this header;
#: the session is ``running`` meanwhile, as a real agent's is while it thinks.
ANSWER_HEADER = "x-emulator-answer-ms"
BUSY_MESSAGE = "Session is already running. Use 'since' to queue input"
#: The session input route, whose handler spends the emulator's latency itself.
INPUT_ROUTE = "POST /v2/agents/{agent_key}/sessions/{session_key}/events"


async def _spend_latency(request: Request) -> None:
    """The emulator's added latency for this request, spent once (the gateway left it to the
    route, so that it falls inside the time the session is running)."""
    seconds = float(request.scope.get("state", {}).pop(DEFERRED_LATENCY, 0.0) or 0.0)
    if seconds > 0:
        await asyncio.sleep(seconds)


def _think_seconds(request: Request, store: VectaraStore) -> float:
    """How long the scripted agent thinks: this request's ``X-Emulator-Answer-Ms``, else what a
    test set on the store, else the emulator's ``vectara_think_ms``."""
    asked = request.headers.get(ANSWER_HEADER)
    if asked:
        return float(asked) / 1000.0
    if store.answer_seconds is not None:
        return store.answer_seconds
    return float(emulator_state(request).config.vectara_think_ms) / 1000.0


async def create_input(agent_key: str, session_key: str, request: Request) -> Response:
    """A session input. The session is running from the moment the input arrives (before the
    emulator's latency) until its answer is complete, as Vectara's is while its agent answers:
    an input arriving meanwhile without ``since`` is refused with 409 at once; one with
    ``since`` is queued until the session stops."""
    try:
        return await _take_input(agent_key, session_key, request)
    finally:
        await _spend_latency(request)  # an answer that spent none yet (a refusal) spends it now


async def _take_input(agent_key: str, session_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    agent = store.agent(agent_key)
    session = store.session(agent_key, session_key)
    given = await _input(request)
    if not agent["enabled"] or not session["enabled"]:
        raise VectaraHTTPError(400, "invalid_request: this agent or session is disabled")
    where = (agent_key, session_key)
    kind = given["type"]
    if kind == "interrupt":
        running = where in store.running
        if running:
            store.interrupted.add(where)
        stopped = _event(store, session_key, "session_interrupted")  # transient: not stored
        return JSONResponse({"session_key": session_key, "events": [stopped]}, status_code=201)
    if kind == "tool_output":
        raise _bad("tool_outputs", "no client tool call is pending in this session")
    busy = store.running.get(where)
    if busy is not None:
        if given.get("since") is None and kind == "input_message":
            raise VectaraHTTPError(409, BUSY_MESSAGE)
        await busy.wait()  # queued: taken once the running answer ends
    if where not in store.sessions:
        raise VectaraHTTPError(404, f"session_not_found: no session '{session_key}'")
    if kind == "compact":
        return JSONResponse(
            {"session_key": session_key, "events": [_compact(store, where)]}, status_code=201
        )
    done = store.running[where] = asyncio.Event()
    session["status"] = "running"
    try:
        await _spend_latency(request)
        seconds = _think_seconds(request, store)
        if seconds > 0:
            await asyncio.sleep(min(seconds, 60.0))
        events = _answer(store, where, given["messages"])
    except BaseException:
        _stopped(store, where, done)
        raise
    since = given.get("since")
    if since is not None:
        history = store.events[where]
        after = next((i for i, e in enumerate(history) if e["id"] == since), None)
        events = history if since == "start" or after is None else history[after + 1 :]
    if not given["stream"]:
        _stopped(store, where, done)
        return JSONResponse({"session_key": session_key, "events": events}, status_code=201)
    return StreamingResponse(
        _stream(
            store,
            events,
            lambda: _stopped(store, where, done),
            store.sessions[where].get("session_context_usage"),
        ),
        status_code=201,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


def _answer(
    store: VectaraStore, where: tuple[str, str], messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The scripted agent's turn: the input and its answer, stored (or, interrupted, the
    input and a transient ``session_interrupted``)."""
    session_key = where[1]
    variables = store.variables.setdefault(where, {})
    text = " ".join(m["content"] for m in messages)
    received = _event(store, session_key, "input_message", messages=messages)
    if where in store.interrupted:
        store.interrupted.discard(where)
        store.events[where].append(received)
        return [received, _event(store, session_key, "session_interrupted")]
    turn = store.script.respond(text, variables)
    variables.update(turn.variables)
    parser = (store.agents.get(where[0], {}).get("first_step") or {}).get("output_parser") or {}
    if parser.get("type") == "structured":
        spec = parser["json_schema"]
        hints = [turn.intent, *turn.variables.values(), *variables.values()]
        content = structured_answer(spec["schema"], turn.text, hints, variables)
        answer = _event(
            store, session_key, "structured_output", schema_name=spec["name"], content=content
        )
    else:
        answer = _event(store, session_key, "agent_output", content=turn.text)
    store.events[where].extend([received, answer])
    words = sum(len(m["content"].split()) for m in messages)
    read, written = 40 + 2 * words, 2 * len(turn.text.split())  # a rough token count
    store.sessions[where]["session_context_usage"] = {
        "input_tokens": {"count": read},
        "output_tokens": {"count": written},
        "total_tokens": read + written,
        "model_context_window": 128_000,
    }
    return [received, answer]


def structured_answer(
    schema: Any, text: str, hints: list[Any], variables: dict[str, Any], name: str = ""
) -> Any:
    """The scripted agent's answer as JSON conforming to ``schema``, filled deterministically
    from its turn: a string property gets the session variable of its name when there is one,
    else the answer's text; an ``enum`` the first of its values that the variable of its name,
    the turn's intent, or a variable's value (``hints``, this turn's first) names, else its
    first; a number the variable's number (else 0); a boolean whether the variable is "true";
    an array nothing; an object each of its properties likewise (``docs/emulator.md``)."""
    if not isinstance(schema, dict):
        return None
    for branch in ("anyOf", "oneOf"):
        options = [option for option in schema.get(branch) or [] if isinstance(option, dict)]
        useful = [option for option in options if option.get("type") != "null"]
        if useful:
            return structured_answer(useful[0], text, hints, variables, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    given = variables.get(name)
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        wanted = [str(v).casefold() for v in (given, *hints) if v is not None]
        found = next((v for w in wanted for v in schema["enum"] if str(v).casefold() == w), None)
        return schema["enum"][0] if found is None else found
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {
            key: structured_answer(value, text, hints, variables, key)
            for key, value in properties.items()
        }
    if kind == "array":
        return []
    if kind == "boolean":
        return str(given).casefold() == "true"
    if kind in ("integer", "number"):
        try:
            number = float(given) if given is not None else 0.0
        except (TypeError, ValueError):
            number = 0.0
        return int(number) if kind == "integer" else number
    return str(given) if given is not None else text


def _stopped(store: VectaraStore, where: tuple[str, str], done: asyncio.Event) -> None:
    if store.running.get(where) is done:
        del store.running[where]
    session = store.sessions.get(where)
    if session is not None:
        session["status"] = "stopped"
    done.set()


def _compact(store: VectaraStore, where: tuple[str, str]) -> dict[str, Any]:
    """Hide every earlier event behind a stored ``compaction`` event."""
    history = [e for e in store.events[where] if e["id"] not in store.hidden]
    turns = sum(1 for e in history if e["type"] == "input_message")
    store.hidden.update(e["id"] for e in history)
    event = _event(
        store,
        where[1],
        "compaction",
        turns_compacted=turns,
        events_compacted=len(history),
        summary_text=f"{turns} earlier turns, compacted.",
        summary_key=f"sum_{secrets.token_hex(6)}",
    )
    store.events[where].append(event)
    return event


async def list_events(agent_key: str, session_key: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    store.session(agent_key, session_key)
    events = store.events.get((agent_key, session_key), [])
    if request.query_params.get("include_hidden", "false").lower() != "true":
        events = [event for event in events if event["id"] not in store.hidden]
    return JSONResponse(_page(events, request, "events"))


async def get_event(agent_key: str, session_key: str, event_id: str, request: Request) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    return JSONResponse(_find_event(store, agent_key, session_key, event_id))


def _find_event(
    store: VectaraStore, agent_key: str, session_key: str, event_id: str
) -> dict[str, Any]:
    store.session(agent_key, session_key)
    for event in store.events.get((agent_key, session_key), []):
        if event["id"] == event_id:
            return event
    raise VectaraHTTPError(404, f"event_not_found: no event '{event_id}'", missing_id=event_id)


async def delete_event(
    agent_key: str, session_key: str, event_id: str, request: Request
) -> Response:
    _authenticate(request)
    store = emulator_state(request).vectara
    event = _find_event(store, agent_key, session_key, event_id)
    store.events[(agent_key, session_key)].remove(event)
    store.hidden.discard(event_id)
    return Response(status_code=204)


def _set_hidden(
    request: Request, agent_key: str, session_key: str, event_id: str, *, hidden: bool
) -> Response:
    """A hidden event leaves the agent's context and the default events list."""
    _authenticate(request)
    store = emulator_state(request).vectara
    event = _find_event(store, agent_key, session_key, event_id)
    if hidden:
        store.hidden.add(event_id)
    else:
        store.hidden.discard(event_id)
    return JSONResponse(event)


async def hide_event(agent_key: str, session_key: str, event_id: str, request: Request) -> Response:
    return _set_hidden(request, agent_key, session_key, event_id, hidden=True)


async def unhide_event(
    agent_key: str, session_key: str, event_id: str, request: Request
) -> Response:
    return _set_hidden(request, agent_key, session_key, event_id, hidden=False)


async def list_outstanding_client_tool_calls(
    agent_key: str, session_key: str, request: Request
) -> Response:
    """Always empty: the scripted agent has no client tools, so no session parks on one."""
    _authenticate(request)
    emulator_state(request).vectara.session(agent_key, session_key)
    return JSONResponse({"client_tool_calls": []})


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


#: The agent operations of Vectara's current document that the emulator does not serve
#: (``docs/emulator.md``), with their methods: each answers as Vectara answers an unknown
#: resource, a 404 in its error body naming the ID not found.
NOT_EMULATED = {
    "/{agent_key}/schedules": ("GET", "POST"),
    "/{agent_key}/schedules/{schedule_key}": ("GET", "PATCH", "DELETE"),
    "/{agent_key}/schedules/{schedule_key}/executions": ("GET",),
    "/{agent_key}/identity": ("GET", "PATCH"),
    "/{agent_key}/secrets": ("GET", "PUT", "PATCH"),
    "/{agent_key}/connectors": ("GET", "POST"),
    "/{agent_key}/connectors/{connector_id}": ("GET", "PATCH", "DELETE"),
}


async def not_emulated(request: Request) -> Response:
    """An agent operation the emulator does not serve: an unknown agent is Vectara's agent 404;
    a known one answers as an unknown resource would, saying why."""
    _authenticate(request)
    parameters = request.path_params
    emulator_state(request).vectara.agent(str(parameters["agent_key"]))
    resource = request.url.path.rstrip("/").split("/")[4]
    missing = str(list(parameters.values())[-1])
    raise VectaraHTTPError(
        404,
        f"not_found: agent {resource} are not emulated (docs/emulator.md, 'Not emulated')",
        missing_id=missing,
    )


#: Seconds an OAuth access token lives: Vectara's are valid for 30 minutes.
TOKEN_LIFETIME = 1800


async def issue_token(request: Request) -> Response:
    """``POST /oauth2/token``: the OAuth 2.0 client-credentials grant, as a form post (or with
    the client in HTTP Basic). A client secret is accepted as an API key is (any non-empty one,
    unless the emulator has a key list); the error body is OAuth's, not the API's."""
    raw = (await request.body()).decode("utf-8", "replace")
    form = {key: values[0] for key, values in parse_qs(raw).items()}
    client_id, secret = form.get("client_id"), form.get("client_secret")
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        except ValueError:
            client_id = secret = None
    if form.get("grant_type") != "client_credentials":
        return JSONResponse(
            {"error": "unsupported_grant_type", "error_description": "use client_credentials"},
            status_code=400,
        )
    if not client_id or not emulator_state(request).key_accepted(secret):
        return JSONResponse(
            {"error": "invalid_client", "error_description": "Client authentication failed"},
            status_code=401,
        )
    store: VectaraStore = emulator_state(request).vectara
    token = f"vat_{secrets.token_urlsafe(24)}"
    store.tokens[token] = store.clock() + TOKEN_LIFETIME
    return JSONResponse(
        {"access_token": token, "token_type": "bearer", "expires_in": TOKEN_LIFETIME},
        headers={"cache-control": "no-store"},
    )


def build_token_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route("/oauth2/token", issue_token, methods=["POST"])
    return router


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
    event = "/{agent_key}/sessions/{session_key}/events/{event_id}"
    router.add_api_route(event, delete_event, methods=["DELETE"])
    router.add_api_route(f"{event}/hide", hide_event, methods=["POST"])
    router.add_api_route(f"{event}/unhide", unhide_event, methods=["POST"])
    router.add_api_route(
        "/{agent_key}/sessions/{session_key}/outstanding_client_tool_calls",
        list_outstanding_client_tool_calls,
        methods=["GET"],
    )
    router.add_api_route(
        "/{agent_key}/sessions/{session_key}/artifacts", list_artifacts, methods=["GET"]
    )
    router.add_api_route(
        "/{agent_key}/sessions/{session_key}/artifacts/{artifact_id}", get_artifact, methods=["GET"]
    )
    for path, methods in NOT_EMULATED.items():
        router.add_api_route(path, not_emulated, methods=list(methods))
    return router


async def _stream(
    store: VectaraStore,
    events: list[dict[str, Any]],
    stopped: Callable[[], None],
    usage: dict[str, Any] | None = None,
) -> AsyncIterator[bytes]:
    """``data:``-only frames: the input's echo, the answer in pieces and their end (a
    transient event whole), how much context the call used, then the terminal ``end``. The
    session stops running when the stream is over (or the client hangs up)."""
    try:
        for event in events:
            if event["type"] == "agent_output":
                for piece in split_for_streaming(event["content"]):
                    yield _frame(
                        {
                            "type": "streaming_agent_output",
                            "content": piece,
                            "created_at": store.now(),
                        }
                    )
                yield _frame({"type": "streaming_agent_output_end", "created_at": store.now()})
            else:
                yield _frame(event)
        if usage is not None:
            consumed = {"type": "context_consumed", "session_context_usage": usage}
            yield _frame({**consumed, "created_at": store.now()})
        yield _frame({"type": "end"})
    finally:
        stopped()


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
    exact=("/v2/agents", "/oauth2/token"),
    error=lambda status, message, headers: vectara_error(status, message, headers=headers),
    routers=lambda: [build_router(), build_token_router()],
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
    latency_in_answer=frozenset({INPUT_ROUTE}),
)
