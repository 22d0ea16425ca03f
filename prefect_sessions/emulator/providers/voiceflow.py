"""Voiceflow's general runtime: v4 sessions and interact (JSON and SSE), state, legacy interact
and session events (``providers.md`` section 1, ``voiceflow-general-runtime.openapi.json``).

Auth as the real runtime does it: the project API key (raw ``authorization``) starts sessions
and reads state; v4 interact takes only the ``sessionKey``; a new session for a user revokes the
old key.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from prefect_sessions.emulator.agent import AgentScript, Button, Turn, split_for_streaming
from prefect_sessions.emulator.api import EmulatedAPI
from prefect_sessions.emulator.context import emulator_state
from prefect_sessions.emulator.errors import phrase


class _KeySettings(Protocol):
    api_keys: frozenset[str] | None


class EmulatorState(Protocol):
    """What Voiceflow's routes read of the emulator's state (:class:`.state.EmulatorState`)."""

    agent: AgentScript
    voiceflow: VoiceflowStore
    settings: _KeySettings

    def key_accepted(self, key: str | None) -> bool: ...


#: The legacy runtime's default: these trace types are left out unless ``config.excludeTypes``
#: says otherwise.
DEFAULT_EXCLUDED_TYPES = ("block", "debug", "flow")

_SUPERSEDED = (
    "Session key has been superseded by a newer session for this user: "
    "start a session again and use the new sessionKey"
)


def voiceflow_error(
    status: int, data: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    now = time.time()
    body = {
        "code": status,
        "status": phrase(status),
        "dateTime": datetime.fromtimestamp(now, timezone.utc).isoformat().replace("+00:00", "Z"),
        "timestamp": int(now * 1000),
        "data": data if data is not None else phrase(status),
    }
    return JSONResponse(body, status_code=status, headers=headers)


class VoiceflowHTTPError(Exception):
    """Answer with Voiceflow's error envelope."""

    def __init__(self, status: int, data: str) -> None:
        super().__init__(data)
        self.status = status
        self.data = data


@dataclass
class VoiceflowSession:
    key: str
    project_id: str
    environment: str
    user_id: str
    api_key: str
    revoked: str | None = None


#: Transcripts the emulator keeps (the oldest go first, as expired ones do): enough to record a
#: suite from, bounded so a load run against an emulator in its own process stays flat.
MAX_TRANSCRIPTS = 2_000


def _iso(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass
class Transcript:
    """One session's transcript as the Analytics API keeps it: each turn as it happened (the
    user's action, the agent's turn, the variables it changed), made into log entries only when
    it is read, so that a load run pays an append per turn, not the traces' JSON."""

    id: str
    session_id: str
    project_id: str
    environment_id: str
    created: float
    updated: float
    turns: list[tuple[dict[str, Any], Turn, dict[str, tuple[Any, Any]], float]] = field(
        default_factory=list
    )
    #: Entries kept as given (``(kind, data as JSON text, time)``): a transcript imported or
    #: damaged, as a test may make one.
    raw_logs: list[tuple[str, str, float]] = field(default_factory=list)
    properties: list[dict[str, Any]] = field(default_factory=list)

    @property
    def has_logs(self) -> bool:
        return bool(self.turns or self.raw_logs)

    def entries(self) -> Iterator[tuple[str, dict[str, Any] | str, float]]:
        """``(kind, data, time)``: an ``action`` per user action, a ``trace`` per trace (and a
        ``log`` trace of kind ``step.set`` for the variables a turn changed); ``data`` is an
        object, or the text of a raw entry."""
        for action, turn, changed, at in self.turns:
            yield "action", action, at
            for trace in turn_traces(turn, completion_events=False, excluded=("debug",)):
                yield "trace", trace, at
            if changed:
                message = {
                    "changedVariables": {
                        name: {"before": before, "after": after}
                        for name, (before, after) in changed.items()
                    }
                }
                log = {"kind": "step.set", "level": "info", "message": message}
                yield "trace", {"type": "log", "payload": log}, at
        for kind, text, at in self.raw_logs:
            yield kind, text, at


@dataclass
class VoiceflowStore:
    sessions: dict[str, VoiceflowSession] = field(default_factory=dict)
    current: dict[tuple[str, str], str] = field(default_factory=dict)
    states: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Projects made before environments existed: their aliases are ``development`` and
    #: ``production``, and ``main`` is unknown.
    legacy_projects: set[str] = field(default_factory=set)
    #: Every session's transcript by its ID, and the one open for each (project, user).
    transcripts: OrderedDict[str, Transcript] = field(default_factory=OrderedDict)
    open_transcripts: dict[tuple[str, str], str] = field(default_factory=dict)

    def new_transcript(self, project_id: str, environment: str, user_id: str) -> Transcript:
        now = time.time()
        transcript = Transcript(
            id=uuid.uuid4().hex[:24],
            session_id=user_id,
            project_id=project_id,
            environment_id=environment,
            created=now,
            updated=now,
        )
        self.transcripts[transcript.id] = transcript
        self.open_transcripts[(project_id, user_id)] = transcript.id
        while len(self.transcripts) > MAX_TRANSCRIPTS:
            _, gone = self.transcripts.popitem(last=False)
            key = (gone.project_id, gone.session_id)
            if self.open_transcripts.get(key) == gone.id:
                del self.open_transcripts[key]
        return transcript

    def transcript_of(self, key: tuple[str, str], environment: str) -> Transcript:
        """The transcript a user's turn is logged in (a new one if none is open)."""
        found = self.transcripts.get(self.open_transcripts.get(key, ""))
        return found or self.new_transcript(key[0], environment, key[1])

    def log_turn(
        self,
        key: tuple[str, str],
        environment: str,
        action: dict[str, Any],
        turn: Turn,
        changed: dict[str, tuple[Any, Any]],
    ) -> None:
        """Log one turn in the user's open transcript (a launch after other turns opens a new
        one, as a new conversation)."""
        if action.get("type") == "launch" and key in self.open_transcripts:
            transcript = self.transcripts.get(self.open_transcripts[key])
            if transcript is not None and transcript.has_logs:
                self.new_transcript(key[0], environment, key[1])
        transcript = self.transcript_of(key, environment)
        now = time.time()
        transcript.turns.append((action, turn, changed, now))
        transcript.updated = now

    def environments(self, project_id: str) -> tuple[str, ...]:
        if project_id in self.legacy_projects:
            return ("development", "production")
        return ("main", "development", "production")

    def owner_of(self, session_key: str) -> str | None:
        """The API key that started a session (revoked ones too), for rate limiting."""
        session = self.sessions.get(session_key)
        return session.api_key if session else None

    def start(self, project_id: str, environment: str, user_id: str, api_key: str) -> str:
        previous = self.current.get((project_id, user_id))
        if previous in self.sessions:
            self.sessions[previous].revoked = _SUPERSEDED
        key = _session_key(project_id, user_id)
        self.sessions[key] = VoiceflowSession(key, project_id, environment, user_id, api_key)
        self.current[(project_id, user_id)] = key
        return key

    def end_user(self, project_id: str, user_id: str) -> None:
        """Delete a user's state and end their session (DELETE state)."""
        self.states.pop((project_id, user_id), None)
        key = self.current.pop((project_id, user_id), None)
        if key in self.sessions:
            self.sessions[key].revoked = "Session has ended: its state was deleted"


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _session_key(project_id: str, user_id: str) -> str:
    """JWT-shaped and opaque, as the real sessionKey; the signature is random, not a signature."""
    header = _b64({"alg": "HS256", "typ": "JWT"})
    claims = _b64(
        {
            "sid": uuid.uuid4().hex,
            "projectID": project_id,
            "userID": user_id,
            "iat": int(time.time()),
        }
    )
    return f"{header}.{claims}.{secrets.token_urlsafe(32)}"


def _object_id(seed: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, seed).hex[:24]


def new_state(project_id: str, agent: AgentScript) -> dict[str, Any]:
    return {
        "stack": [
            {
                "programID": _object_id(project_id + "/main"),
                "diagramID": _object_id(project_id + "/main"),
                "nodeID": None,
                "name": "ROOT",
                "storage": {},
                "variables": {},
                "commands": [],
            }
        ],
        "storage": {},
        "variables": agent.initial_variables(),
    }


# -- request helpers ----------------------------------------------------------------------------


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise VoiceflowHTTPError(400, "Request body is not valid JSON") from None


def _api_key(request: Request, state: EmulatorState) -> str:
    """The project API key from ``authorization``; session keys are refused here."""
    key = request.headers.get("authorization", "")
    if not key:
        raise VoiceflowHTTPError(401, "Auth Key Required")
    if key in state.voiceflow.sessions:
        raise VoiceflowHTTPError(
            401, "Invalid API key: this endpoint takes the project API key, not a sessionKey"
        )
    if not state.key_accepted(key):
        raise VoiceflowHTTPError(401, "Invalid API key")
    return key


def _session(request: Request, state: EmulatorState) -> VoiceflowSession:
    key = request.headers.get("authorization", "")
    if not key:
        raise VoiceflowHTTPError(401, "Auth Key Required")
    session = state.voiceflow.sessions.get(key)
    if session is None:
        if key.startswith("VF.") or (state.settings.api_keys and key in state.settings.api_keys):
            raise VoiceflowHTTPError(
                401,
                "Invalid session key: /v4/interact takes the sessionKey returned by start "
                "session, not an API key",
            )
        raise VoiceflowHTTPError(401, "Invalid session key")
    if session.revoked:
        raise VoiceflowHTTPError(401, session.revoked)
    return session


def _project_header(request: Request) -> str:
    # The current spec requires the `projectID` header; the legacy one sent `versionID` instead.
    project = request.headers.get("projectid", request.headers.get("versionid"))
    if project is None:
        raise VoiceflowHTTPError(400, "Missing projectID header: send the ID of the target project")
    return project


def _user_id(user_id: str, max_length: int) -> str:
    if not 1 <= len(user_id) <= max_length:
        raise VoiceflowHTTPError(400, f"userID must be 1 to {max_length} characters")
    return user_id


# -- the agent's turn as traces -----------------------------------------------------------------


def _slate(text: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex[:8], "content": [{"children": [{"text": text}]}]}


def _button(button: Button) -> dict[str, Any]:
    target = button.intent or re.sub(r"[^a-z0-9]+", "-", button.label.lower()).strip("-")
    payload: dict[str, Any] = {"label": button.label}
    if button.url:
        # A URL button, as Voiceflow's web chat reads it: an open_url action in its request.
        payload["actions"] = [{"type": "open_url", "payload": {"url": button.url}}]
    return {"name": button.label, "request": {"type": f"path-{target}", "payload": payload}}


def turn_traces(
    turn: Turn, *, completion_events: bool, excluded: Iterable[str]
) -> list[dict[str, Any]]:
    """Voiceflow traces for one turn; generated answers become ``completion`` traces if asked."""
    now = int(time.time() * 1000)
    turn_id = uuid.uuid4().hex
    traces: list[dict[str, Any]] = []
    if turn.intent:
        traces.append(
            {
                "type": "debug",
                "payload": {"type": "intent", "message": f"matched intent: {turn.intent}"},
            }
        )
    for reply in turn.replies:
        if reply.kind == "generate" and completion_events:
            # One messageID ties the pieces of one generated message together.
            message_id = uuid.uuid4().hex
            traces.append(
                {"type": "completion", "payload": {"state": "start", "messageID": message_id}}
            )
            for piece in split_for_streaming(reply.text):
                content = {"state": "content", "content": piece, "messageID": message_id}
                traces.append({"type": "completion", "payload": content})
            traces.append(
                {"type": "completion", "payload": {"state": "end", "messageID": message_id}}
            )
        elif reply.kind in ("text", "generate"):
            traces.append(
                {
                    "type": "text",
                    "payload": {
                        "slate": _slate(reply.text),
                        "message": reply.text,
                        "delay": 0,
                        "messageID": uuid.uuid4().hex,
                    },
                }
            )
        elif reply.kind == "choice":
            traces.append(
                {"type": "choice", "payload": {"buttons": [_button(b) for b in reply.buttons]}}
            )
        elif reply.kind == "card":
            payload: dict[str, Any] = {
                "title": reply.title,
                "imageUrl": reply.image_url,
                "description": {"text": reply.text, "slate": _slate(reply.text)["content"]},
                "buttons": [_button(b) for b in reply.buttons],
            }
            traces.append({"type": "cardV2", "payload": payload})
    if turn.ended:
        traces.append({"type": "end", "payload": None})
    skip = set(excluded)
    return [{**t, "time": now, "turnID": turn_id} for t in traces if t["type"] not in skip]


def _object(value: Any) -> dict[str, Any]:
    """A JSON object as sent, or an empty one for anything else (a list, a string, a number):
    the runtime reads named fields of an action's payload and ignores what is not there."""
    return value if isinstance(value, dict) else {}


def _action_turn(agent: AgentScript, action: dict[str, Any], variables: dict[str, Any]) -> Turn:
    kind = action.get("type")
    payload = action.get("payload")
    if not isinstance(kind, str) or not kind:
        raise VoiceflowHTTPError(400, "action.type is required, e.g. {'type': 'launch'}")
    if kind == "launch":
        return agent.launch(variables)
    if kind == "text":
        if not isinstance(payload, str):
            raise VoiceflowHTTPError(
                400, "a 'text' action needs the user's words in action.payload"
            )
        return agent.respond(payload, variables)
    if kind == "no-reply":
        return agent.no_reply_turn(variables)
    if kind == "end":
        return Turn(intent=None, replies=(), ended=True)
    payload = _object(payload)
    if kind == "intent":
        name = _object(payload.get("intent")).get("name")
        by_name = agent.run_intent(name, variables) if isinstance(name, str) else None
        return by_name or agent.respond(str(payload.get("query", "")), variables)
    if kind == "event":
        name = _object(payload.get("event")).get("name")
        by_name = agent.run_intent(name, variables) if isinstance(name, str) else None
        return by_name or agent.respond("", variables)
    if kind.startswith("path-"):
        by_name = agent.run_intent(kind.removeprefix("path-"), variables)
        if by_name:
            return by_name
    return agent.respond(str(payload.get("label", "")), variables)


def run_turn(
    state: EmulatorState, key: tuple[str, str], body: Any, *, allow_request_alias: bool = False
) -> tuple[Turn, dict[str, Any], dict[str, Any], dict[str, tuple[Any, Any]]]:
    """Apply variables, run the agent on the action, save state; return (turn, state, config,
    the variables the turn changed with their values before and after)."""
    if not isinstance(body, dict):
        raise VoiceflowHTTPError(400, "Request body must be a JSON object with an 'action'")
    action = body.get("action")
    if action is None and allow_request_alias:
        action = body.get("request")  # older docs wrap the action as {"request": {...}}
    if not isinstance(action, dict):
        raise VoiceflowHTTPError(400, "action is required: an object such as {'type': 'launch'}")
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise VoiceflowHTTPError(400, "config must be an object")
    agent = state.agent
    user_state = state.voiceflow.states.setdefault(key, new_state(key[0], agent))
    variables = user_state.setdefault("variables", {})
    if isinstance(body.get("variables"), dict):
        variables.update(body["variables"])
    given_state = body.get("state")
    if isinstance(given_state, dict) and isinstance(given_state.get("variables"), dict):
        variables.update(given_state["variables"])
    if action.get("type") == "launch" and not user_state.get("stack"):
        user_state["stack"] = new_state(key[0], agent)["stack"]
    turn = _action_turn(agent, action, variables)
    changed = {
        name: (variables.get(name), value)
        for name, value in turn.variables.items()
        if variables.get(name) != value
    }
    variables.update(turn.variables)

    count = _object(user_state.get("turn")).get("count", 0)
    counted = count if isinstance(count, int) and not isinstance(count, bool) else 0
    user_state["turn"] = {"count": counted + 1}
    if turn.ended:
        user_state["stack"] = []
    return turn, user_state, config, changed


def _excluded(config: dict[str, Any]) -> Iterable[str]:
    excluded = config.get("excludeTypes")
    return excluded if isinstance(excluded, list) else DEFAULT_EXCLUDED_TYPES


# -- routes -------------------------------------------------------------------------------------


async def start_session(request: Request, project_id: str, environment: str) -> Response:
    state = emulator_state(request)
    api_key = _api_key(request, state)
    body = await _json_body(request)
    user_id = body.get("userID") if isinstance(body, dict) else None
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= 256:
        raise VoiceflowHTTPError(400, "userID is required: a string of 1 to 256 characters")
    known = state.voiceflow.environments(project_id)
    if environment not in known and not _OBJECT_ID.match(environment):
        raise VoiceflowHTTPError(
            404, f"Environment '{environment}' not found for project {project_id}"
        )
    key = state.voiceflow.start(project_id, environment, user_id, api_key)
    state.voiceflow.new_transcript(project_id, environment, user_id)
    # A new session starts the conversation over, but variables are not reset: those the user
    # had (set with PATCH before the start, say) are kept.
    previous = state.voiceflow.states.get((project_id, user_id))
    fresh = new_state(project_id, state.agent)
    if previous is not None:
        fresh["variables"] = {**fresh["variables"], **previous.get("variables", {})}
    state.voiceflow.states[(project_id, user_id)] = fresh
    return JSONResponse({"sessionKey": key})


_OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


async def session_traffic_split(projectID: str, request: Request) -> Response:
    return await start_session(request, projectID, "production")


async def session_environment(
    projectID: str,
    environmentID: str,
    request: Request,
) -> Response:
    return await start_session(request, projectID, environmentID)


async def v4_traces(request: Request, *, streaming: bool) -> list[dict[str, Any]]:
    state = emulator_state(request)
    session = _session(request, state)
    body = await _json_body(request)
    key = (session.project_id, session.user_id)
    turn, _, config, changed = run_turn(state, key, body)
    # Completion events are a streaming feature: a JSON answer carries whole text traces.
    completion = streaming and config.get("completionEvents") is True
    # The transcript keeps every trace the turn made, whatever this answer excluded.
    state.voiceflow.log_turn(key, session.environment, body["action"], turn, changed)
    return turn_traces(turn, completion_events=completion, excluded=_excluded(config))


async def interact(request: Request) -> Response:
    return JSONResponse({"traces": await v4_traces(request, streaming=False)})


async def interact_stream(request: Request) -> Response:
    traces = await v4_traces(request, streaming=True)
    return StreamingResponse(
        sse_frames(traces), media_type="text/event-stream", headers=_SSE_HEADERS
    )


async def get_state(userID: str, request: Request) -> Response:
    state = emulator_state(request)
    _api_key(request, state)
    key = (_project_header(request), _user_id(userID, 128))
    return JSONResponse(state.voiceflow.states.get(key, {}))


async def put_state(userID: str, request: Request) -> Response:
    state = emulator_state(request)
    _api_key(request, state)
    key = (_project_header(request), _user_id(userID, 128))
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise VoiceflowHTTPError(400, "State must be an object with stack, storage and variables")
    for name, kind, noun in (
        ("stack", list, "an array"),
        ("storage", dict, "an object"),
        ("variables", dict, "an object"),
    ):
        if not isinstance(body.get(name), kind):
            raise VoiceflowHTTPError(400, f"State.{name} is required and must be {noun}")
    state.voiceflow.states[key] = body
    return JSONResponse(body)


async def patch_variables(userID: str, request: Request) -> Response:
    state = emulator_state(request)
    _api_key(request, state)
    key = (_project_header(request), _user_id(userID, 128))
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise VoiceflowHTTPError(400, "Body must be an object of variables to merge")
    user_state = state.voiceflow.states.setdefault(key, new_state(key[0], state.agent))
    user_state.setdefault("variables", {}).update(body)
    return JSONResponse(user_state)


async def delete_state(userID: str, request: Request) -> Response:
    state = emulator_state(request)
    _api_key(request, state)
    project = _project_header(request)
    state.voiceflow.end_user(project, _user_id(userID, 128))
    return Response(status_code=200)


async def legacy_interact(userID: str, request: Request) -> Response:
    state = emulator_state(request)
    _api_key(request, state)
    key = (_project_header(request), _user_id(userID, 128))
    body = await _json_body(request)
    turn, user_state, config, changed = run_turn(state, key, body, allow_request_alias=True)
    traces = turn_traces(turn, completion_events=False, excluded=_excluded(config))
    action = body.get("action") or body.get("request")
    state.voiceflow.log_turn(key, "production", action, turn, changed)
    if request.query_params.get("verbose") == "true":
        return JSONResponse({"trace": traces, "state": user_state, "action": action})
    return JSONResponse(traces)


async def emit_event(projectID: str, sessionID: str, request: Request) -> Response:
    state = emulator_state(request)
    _api_key(request, state)
    body = await _json_body(request)
    action = body.get("action") if isinstance(body, dict) else None
    if not isinstance(action, dict) or not isinstance(action.get("type"), str):
        raise VoiceflowHTTPError(400, "action is required: an object with a 'type'")
    # As the vendor: accepted whatever the session, delivered only to a session with an open
    # realtime socket. The emulator serves no socket, so nothing is ever delivered.
    state.voiceflow.events.append(
        {
            "projectID": projectID,
            "sessionID": sessionID,
            "action": action,
            "delivered": False,
            "why": "no open realtime connection for this session",
        }
    )
    return Response(status_code=201)


def build_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route("/v4/project/{projectID}/session", session_traffic_split, methods=["POST"])
    router.add_api_route(
        "/v4/project/{projectID}/environment/{environmentID}/session",
        session_environment,
        methods=["POST"],
    )
    router.add_api_route("/v4/interact", interact, methods=["POST"])
    router.add_api_route("/v4/interact/stream", interact_stream, methods=["POST"])
    router.add_api_route("/state/user/{userID}", get_state, methods=["GET"])
    router.add_api_route("/state/user/{userID}", put_state, methods=["PUT"])
    router.add_api_route("/state/user/{userID}/variables", patch_variables, methods=["PATCH"])
    router.add_api_route("/state/user/{userID}", delete_state, methods=["DELETE"])
    router.add_api_route("/state/user/{userID}/interact", legacy_interact, methods=["POST"])
    router.add_api_route(
        "/v2/project/{projectID}/session/{sessionID}/event", emit_event, methods=["POST"]
    )
    return router


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def sse_frames(traces: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The v4 stream: a leading blank line (as the real service may send), one ``trace`` frame
    per trace, then exactly one ``end`` frame with ``data: {}``."""
    yield b"\n"
    number = 0
    for number, trace in enumerate(traces, start=1):
        data = json.dumps(trace, separators=(",", ":"))
        yield f"event: trace\nid: {number}\ndata: {data}\n\n".encode()
    yield f"event: end\nid: {number + 1}\ndata: {{}}\n\n".encode()


def voiceflow_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, VoiceflowHTTPError)
    return voiceflow_error(exc.status, exc.data)


def _caller_key(headers: Mapping[str, str], path: str, store: Any) -> str:
    credential = headers.get("authorization", "")
    if path.startswith("/v4/interact"):
        # Interact counts against the API key that started the session: one key, one bucket.
        owner: str | None = store.owner_of(credential)
        return owner or credential
    return credential


API = EmulatedAPI(
    name="voiceflow",
    title="Voiceflow",
    prefixes=("/v4/", "/state/", "/v2/project/"),
    error=lambda status, message, headers: voiceflow_error(status, message, headers),
    routers=lambda: [build_router()],
    exception_handlers=lambda: {VoiceflowHTTPError: voiceflow_error_handler},
    new_store=lambda agent, clock: VoiceflowStore(),
    default_limit="500/60s",
    limit_help="default 500/60s: the runtime's fixed window per API key, X-RateLimit-* published",
    caller_key=_caller_key,
    publish="headers",  # the open-source runtime: X-RateLimit-* on every answer
    scope="key",
    rate_limited_message="Too Many Requests",
    too_many_concurrent_message="Too Many Requests",
    retry_after="floor",  # floored, so it can be 0
    reset="iso",
)
