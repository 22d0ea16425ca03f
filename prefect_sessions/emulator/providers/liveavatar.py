"""LiveAvatar (HeyGen): session tokens, start/stop/keep-alive, lists, transcripts, avatars, and
the LITE-mode websocket at the ``ws_url`` that start returns.

Contracts: ``providers.md`` section 2 and ``liveavatar.openapi.json``. Request bodies are pydantic
models named after the vendor's schemas, so a bad body gets the same FastAPI 422 ``detail`` (with
the same ``loc``) as the real API. Other answers use ``{code, data, message}``, ``code`` 1000 on
success as the official SDK expects.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocketDisconnect

from prefect_sessions.emulator.api import EmulatedAPI, bearer_or_api_key
from prefect_sessions.emulator.context import emulator_state

#: The public sandbox avatar ("Wayne"), the only one sandbox sessions may use.
SANDBOX_AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"
SUCCESS = 1000
#: LITE audio packets above this may close the connection (docs: at most 1 MB per packet).
MAX_AUDIO_PACKET = 1_000_000
_CREDITS_PER_MINUTE = {"FULL": 2.0, "LITE": 1.0}


def liveavatar_error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    # Undocumented beyond {code, data, message}; `code` carries the HTTP status.
    body = {"code": status, "data": None, "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


class LiveAvatarHTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- request bodies (names and fields as in the vendor's OpenAPI) --------------------------------

VideoQuality = Literal["very_high", "high", "medium", "low"]


class VideoSettings(BaseModel):
    quality: VideoQuality = "high"
    encoding: Literal["VP8", "H264"] = "H264"


class ElevenLabsVoiceSettings(BaseModel):
    provider: Literal["elevenLabs"] = "elevenLabs"
    speed: float = Field(1, ge=0.8, le=1.2)
    stability: float = Field(0.75, ge=0, le=1)
    similarity_boost: float = Field(0.75, ge=0, le=1)
    style: float = Field(0, ge=0, le=1)
    use_speaker_boost: bool = True
    model: Literal["eleven_flash_v2_5", "eleven_multilingual_v2"] = "eleven_flash_v2_5"
    apply_language_text_normalization: bool = False


class FishAudioVoiceSettings(BaseModel):
    provider: Literal["fish"] = "fish"
    speed: float = Field(1, ge=0.8, le=1.2)
    model: Literal["s1", "s2"] = "s2"
    latency_mode: Literal["normal", "balanced"] = "balanced"


class STTConfigSchema(BaseModel):
    provider: Literal["deepgram", "assembly_ai", "gladia", "elevenlabs"]


VoiceSettings = Annotated[
    ElevenLabsVoiceSettings | FishAudioVoiceSettings, Field(discriminator="provider")
]


class AvatarPersonaSchema(BaseModel):
    voice_id: uuid.UUID | None = None
    context_id: uuid.UUID | None = None
    language: str = "en"
    voice_settings: VoiceSettings | None = None
    stt_config: STTConfigSchema | None = None


class MemoryRef(BaseModel):
    prev_session_id: uuid.UUID | None = None
    session_memory_id: uuid.UUID | None = None


class LiveKitConfigSchema(BaseModel):
    livekit_url: str
    livekit_room: str
    livekit_client_token: str


class AgoraConfigSchema(BaseModel):
    agora_app_id: str
    agora_token: str
    agora_channel: str
    agora_uid: str


class ElevenLabsAgentConfigSchema(BaseModel):
    secret_id: uuid.UUID
    agent_id: str
    voice_id: str | None = None
    dynamic_variables: dict[str, str | int | float | bool] | None = None


class CartesiaAgentConfigSchema(BaseModel):
    secret_id: uuid.UUID
    agent_id: str = Field(min_length=1)


class OpenAIRealtimeConfigSchema(BaseModel):
    secret_id: uuid.UUID
    context_id: uuid.UUID | None = None
    voice: str = "alloy"
    temperature: float = Field(0.8, ge=0.6, le=1.2)
    model: str = "gpt-realtime"


class GeminiRealtimeConfigSchema(BaseModel):
    secret_id: uuid.UUID
    context_id: uuid.UUID | None = None
    voice: str = "Puck"
    temperature: float = Field(0.8, ge=0, le=2)
    model: Literal[
        "gemini-2.5-flash-native-audio-preview-12-2025", "gemini-3.1-flash-live-preview"
    ] = "gemini-3.1-flash-live-preview"


class _TokenCommon(BaseModel):
    avatar_id: uuid.UUID
    is_sandbox: bool = False
    video_settings: VideoSettings | None = None
    max_session_duration: int | None = None


class VoiceAgentRef(BaseModel):
    id: uuid.UUID
    language: str | None = None
    dynamic_variables: dict[str, str] | None = None


class FullSDKSessionTokenConfigDataSchema(_TokenCommon):
    mode: Literal["FULL"] = "FULL"
    avatar_persona: AvatarPersonaSchema | None = None
    voice_agent: VoiceAgentRef | None = None
    interactivity_type: Literal["CONVERSATIONAL", "PUSH_TO_TALK"] = "CONVERSATIONAL"
    llm_configuration_id: uuid.UUID | None = None
    dynamic_variables: dict[str, str] | None = None
    memory: MemoryRef | None = None


class LiteSDKSessionTokenConfigDataSchema(_TokenCommon):
    mode: Literal["LITE"] = "LITE"
    livekit_config: LiveKitConfigSchema | None = None
    agora_config: AgoraConfigSchema | None = None
    elevenlabs_agent_config: ElevenLabsAgentConfigSchema | None = None
    openai_realtime_config: OpenAIRealtimeConfigSchema | None = None
    gemini_realtime_config: GeminiRealtimeConfigSchema | None = None
    cartesia_agent_config: CartesiaAgentConfigSchema | None = None

    @property
    def connector(self) -> bool:
        """A hosted agent drives the avatar: its session has a LiveKit room and no websocket."""
        return any(getattr(self, name) is not None for name in CONNECTORS)


#: The LITE configurations that hand the conversation to a hosted agent (the docs' connectors).
CONNECTORS = (
    "elevenlabs_agent_config",
    "openai_realtime_config",
    "gemini_realtime_config",
    "cartesia_agent_config",
)


SessionEndReason = Literal[
    "UNKNOWN",
    "USER_DISCONNECTED",
    "SERVER_ERROR",
    "IDLE_TIMEOUT",
    "NO_CREDITS",
    "USER_CLOSED",
    "AVATAR_DELETED",
    "MAX_DURATION_REACHED",
    "ZOMBIE_SESSION_REAP",
    "AGENT_HANG_UP",
]


class StopSessionSchema(BaseModel):
    session_id: uuid.UUID | None = None
    reason: SessionEndReason = "UNKNOWN"


class KeepSessionAliveSchema(BaseModel):
    session_id: uuid.UUID | None = None


# -- state --------------------------------------------------------------------------------------


@dataclass
class LiveAvatarSession:
    id: str
    token: str
    api_key: str
    mode: Literal["FULL", "LITE"]
    avatar_id: str
    is_sandbox: bool
    max_session_duration: int | None
    created_at: float
    byo_livekit: LiveKitConfigSchema | None = None
    connector: bool = False
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    last_activity: float = 0.0
    updated_at: float = 0.0
    ws_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    transcript: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.started_at is not None and self.ended_at is None

    def end(self, at: float, reason: str) -> None:
        if self.ended_at is None:
            self.ended_at = at
            self.end_reason = reason
            self.updated_at = at


#: The voice agents the emulator's account has, by id, with their stored ``agent_type``: one
#: FULL-mode agent, and one ElevenLabs agent, whose sessions run LITE even from a FULL token.
VOICE_AGENTS = {
    "5f1e0b4a-3c2d-4e6f-8a9b-0c1d2e3f4a5b": "liveavatar_agent",
    "7a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d": "elevenlabs_agent",
}


@dataclass
class LiveAvatarStore:
    sessions: dict[str, LiveAvatarSession] = field(default_factory=dict)
    by_token: dict[str, str] = field(default_factory=dict)
    voice_agents: dict[str, str] = field(default_factory=lambda: dict(VOICE_AGENTS))


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds")


def _jwt(claims: dict[str, Any]) -> str:
    def b64(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims)}.{secrets.token_urlsafe(32)}"


def _ok(data: Any = None, message: str = "Success", status: int = 200) -> JSONResponse:
    return JSONResponse({"code": SUCCESS, "data": data, "message": message}, status_code=status)


def _refresh(request: Request | WebSocket, session: LiveAvatarSession) -> None:
    """End a session whose time is up (sandbox minute, max duration, idle timeout), as of when."""
    state = emulator_state(request)
    if not session.active or session.started_at is None:
        return
    now = state.clock()
    limits: list[tuple[float, str]] = []
    if session.is_sandbox:
        limits.append(
            (session.started_at + state.config.sandbox_session_seconds, "MAX_DURATION_REACHED")
        )
    if session.max_session_duration:
        limits.append((session.started_at + session.max_session_duration, "MAX_DURATION_REACHED"))
    limits.append((session.last_activity + state.config.idle_timeout_seconds, "IDLE_TIMEOUT"))
    deadline, reason = min(limits)
    if now >= deadline:
        session.end(deadline, reason)


def _entry(request: Request, session: LiveAvatarSession) -> dict[str, Any]:
    _refresh(request, session)
    now = emulator_state(request).clock()
    started = session.started_at
    duration = int(((session.ended_at or now) - started) if started is not None else 0)
    rate = 0.0 if session.is_sandbox else _CREDITS_PER_MINUTE[session.mode]
    entry: dict[str, Any] = {
        "id": session.id,
        "created_at": _iso(session.created_at),
        "updated_at": _iso(session.updated_at or session.created_at),
        "duration": duration,
        "source": "API",
        "mode": session.mode,
        "is_sandbox": session.is_sandbox,
        "credits_consumed": round(duration / 60 * rate, 2),
    }
    if session.ended_at is not None:
        entry["end_at"] = _iso(session.ended_at)
        entry["end_reason"] = session.end_reason
    return entry


# -- auth ---------------------------------------------------------------------------------------


def _bearer(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return None


def require_api_key(request: Request) -> str:
    """``X-API-KEY``; minting tokens and reading sessions take only the API key."""
    key = request.headers.get("x-api-key", "")
    if not key:
        raise LiveAvatarHTTPError(401, "Missing API key: send it in the X-API-KEY header")
    if not emulator_state(request).key_accepted(key):
        raise LiveAvatarHTTPError(401, "Invalid API key")
    return key


def require_session_token(request: Request) -> LiveAvatarSession:
    """``Authorization: Bearer <session_token>`` from ``/v1/sessions/token``."""
    token = _bearer(request)
    if token is None:
        raise LiveAvatarHTTPError(401, "Missing session token: send 'Authorization: Bearer ...'")
    store: LiveAvatarStore = emulator_state(request).liveavatar
    session_id = store.by_token.get(token)
    if session_id is None:
        raise LiveAvatarHTTPError(401, "Invalid or expired session token")
    return store.sessions[session_id]


def _api_key_or_token(request: Request) -> tuple[str | None, LiveAvatarSession | None]:
    if request.headers.get("x-api-key"):
        return require_api_key(request), None
    if _bearer(request):
        return None, require_session_token(request)
    raise LiveAvatarHTTPError(401, "Send an API key (X-API-KEY) or a session token (Bearer)")


def _owned(request: Request, session_id: str, api_key: str) -> LiveAvatarSession:
    store: LiveAvatarStore = emulator_state(request).liveavatar
    session = store.sessions.get(session_id)
    if session is None or session.api_key != api_key:
        raise LiveAvatarHTTPError(404, f"Session {session_id} not found")
    return session


def _target(request: Request, session_id: uuid.UUID | None) -> LiveAvatarSession:
    """The session a stop/keep-alive is about: the token's, or ``session_id`` with an API key."""
    api_key, by_token = _api_key_or_token(request)
    if by_token is not None:
        return by_token
    if session_id is None:
        raise LiveAvatarHTTPError(400, "session_id is required when an API key is used")
    assert api_key is not None
    return _owned(request, str(session_id), api_key)


ApiKey = Annotated[str, Depends(require_api_key)]
SessionFromToken = Annotated[LiveAvatarSession, Depends(require_session_token)]

# -- routes -------------------------------------------------------------------------------------

_WAYNE = {
    "id": SANDBOX_AVATAR_ID,
    "type": "VIDEO",
    "status": "ACTIVE",
    "name": "Wayne",
    "preview_url": None,
    "is_expired": False,
    "default_voice": {"id": "b952f553-f7f3-4e52-8625-86b4c415384f", "name": "Wayne"},
    "is_1080p": False,
    "created_at": "2025-01-01T00:00:00+00:00",
    "updated_at": "2025-01-01T00:00:00+00:00",
    "error_message": None,
}


def _check_one_persona(payload: FullSDKSessionTokenConfigDataSchema) -> None:
    """The docs: ``voice_agent`` is "mutually exclusive with avatar_persona"; one is needed."""
    if (payload.voice_agent is None) == (payload.avatar_persona is None):
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "FullSDKSessionTokenConfigDataSchema"),
                    "msg": "Value error, Provide exactly one of avatar_persona or voice_agent",
                    "input": None,
                }
            ]
        )


async def create_session_token(
    request: Request,
    payload: FullSDKSessionTokenConfigDataSchema | LiteSDKSessionTokenConfigDataSchema,
    api_key: ApiKey,
) -> Response:
    state = emulator_state(request)
    voice_agent = None
    if isinstance(payload, FullSDKSessionTokenConfigDataSchema):
        _check_one_persona(payload)  # body validation comes before the account's checks
        voice_agent = payload.voice_agent
    avatar_id = str(payload.avatar_id)
    if payload.is_sandbox and avatar_id != SANDBOX_AVATAR_ID:
        raise LiveAvatarHTTPError(
            400, f"Sandbox mode only supports the sandbox avatar {SANDBOX_AVATAR_ID}"
        )
    mode, connector = payload.mode, bool(getattr(payload, "connector", False))
    if voice_agent is not None:
        agent_type = state.liveavatar.voice_agents.get(str(voice_agent.id))
        if agent_type is None:
            raise LiveAvatarHTTPError(404, f"Voice agent {voice_agent.id} not found")
        if agent_type == "elevenlabs_agent":  # hosted by ElevenLabs: a LITE connector session
            mode, connector = "LITE", True
    now = state.clock()
    session_id = str(uuid.uuid4())
    token = _jwt({"session_id": session_id, "iat": int(now)})
    session = LiveAvatarSession(
        id=session_id,
        token=token,
        api_key=api_key,
        mode=mode,
        avatar_id=avatar_id,
        is_sandbox=payload.is_sandbox,
        max_session_duration=payload.max_session_duration,
        created_at=now,
        byo_livekit=getattr(payload, "livekit_config", None),
        connector=connector,
    )
    state.liveavatar.sessions[session_id] = session
    state.liveavatar.by_token[token] = session_id
    return _ok({"session_id": session_id, "session_token": token}, "Session token created")


async def start_session(request: Request, session: SessionFromToken) -> Response:
    state = emulator_state(request)
    if session.started_at is not None:
        raise LiveAvatarHTTPError(400, "Session already started: mint a new session token")
    now = state.clock()
    session.started_at = session.last_activity = session.updated_at = now
    data: dict[str, Any] = {
        "session_id": session.id,
        "livekit_url": "wss://livekit.emulator.invalid",
        "livekit_client_token": _jwt({"room": session.id, "role": "client"}),
        "livekit_agent_token": _jwt({"room": session.id, "role": "agent"}),
    }
    if session.byo_livekit is not None:
        data["livekit_url"] = session.byo_livekit.livekit_url
        data["livekit_client_token"] = session.byo_livekit.livekit_client_token
    if session.max_session_duration:
        data["max_session_duration"] = session.max_session_duration
    if session.mode == "LITE" and not session.connector:  # a connector's agent has no socket
        base = str(request.base_url).rstrip("/").replace("http", "ws", 1)
        data["ws_url"] = f"{base}/ws/liveavatar/{session.id}?token={session.ws_token}"
    else:
        greeting = state.agent.launch(state.agent.initial_variables()).text
        _say(session, "avatar", greeting, now)
    return _ok(data, "Session started", status=201)


async def stop_session(
    request: Request,
    body: Annotated[StopSessionSchema, Body()] = StopSessionSchema(reason="USER_CLOSED"),  # noqa: B008
) -> Response:
    session = _target(request, body.session_id)
    _refresh(request, session)
    if session.ended_at is not None:
        return _ok(None, "Session already stopped")
    session.end(emulator_state(request).clock(), body.reason)
    return _ok(None, "Session stopped")


async def close_session(request: Request, session: SessionFromToken) -> Response:
    """``DELETE /v1/sessions`` with the session token: the teardown the vendor's demo app uses
    (not in its OpenAPI); the session ends as the user closing it."""
    _refresh(request, session)
    if session.ended_at is not None:
        return _ok(None, "Session already stopped")
    session.end(emulator_state(request).clock(), "USER_CLOSED")
    return _ok(None, "Session stopped")


async def keep_session_alive(
    request: Request,
    body: Annotated[KeepSessionAliveSchema, Body()] = KeepSessionAliveSchema(),  # noqa: B008
) -> Response:
    session = _target(request, body.session_id)
    _refresh(request, session)
    if not session.active:
        raise LiveAvatarHTTPError(400, "Session is not active")
    session.last_activity = session.updated_at = emulator_state(request).clock()
    return _ok(None, "Session kept alive")


async def list_sessions(
    request: Request,
    api_key: ApiKey,
    type: Literal["active", "historic"],  # the vendor's parameter name
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    avatar_id: str | None = None,
    embed_id: str | None = None,
    context_id: str | None = None,
) -> Response:
    sessions = [
        s
        for s in emulator_state(request).liveavatar.sessions.values()
        if s.api_key == api_key and (avatar_id is None or s.avatar_id == avatar_id)
    ]
    for session in sessions:
        _refresh(request, session)
    wanted = [
        s
        for s in sessions
        if (s.active if type == "active" else s.ended_at is not None)
        and embed_id is None
        and context_id is None
    ]
    chunk = wanted[(page - 1) * page_size : page * page_size]
    data: dict[str, Any] = {
        "count": len(wanted),
        "results": [_entry(request, s) for s in chunk],
    }
    if page * page_size < len(wanted):
        data["next"] = str(request.url.include_query_params(page=page + 1))
    if page > 1:
        data["previous"] = str(request.url.include_query_params(page=page - 1))
    return _ok(data)


async def get_session(session_id: str, request: Request, api_key: ApiKey) -> Response:
    return _ok(_entry(request, _owned(request, session_id, api_key)))


async def get_transcript(
    session_id: str,
    request: Request,
    api_key: ApiKey,
    start_timestamp: int | None = None,
    end_timestamp: int | None = None,
) -> Response:
    session = _owned(request, session_id, api_key)
    _refresh(request, session)
    lines = [
        line
        for line in session.transcript
        if (start_timestamp is None or line["absolute_timestamp"] >= start_timestamp)
        and (end_timestamp is None or line["absolute_timestamp"] <= end_timestamp)
    ]
    return _ok({"session_active": session.active, "transcript_data": lines})


async def delete_session_events(session_id: str, request: Request, api_key: ApiKey) -> Response:
    _owned(request, session_id, api_key).transcript.clear()
    return _ok(None, "Session events deleted")


async def list_public_avatars(_: ApiKey) -> Response:
    return _ok({"count": 1, "results": [_WAYNE]})


async def list_avatars(_: ApiKey) -> Response:
    return _ok({"count": 1, "results": [_WAYNE]})


async def get_avatar(avatar_id: str, _: ApiKey) -> Response:
    if avatar_id != SANDBOX_AVATAR_ID:
        raise LiveAvatarHTTPError(404, f"Avatar {avatar_id} not found")
    return _ok(_WAYNE)


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1")
    router.add_api_route("/sessions/token", create_session_token, methods=["POST"])
    router.add_api_route("/sessions/start", start_session, methods=["POST"])
    router.add_api_route("/sessions/stop", stop_session, methods=["POST"])
    router.add_api_route("/sessions/keep-alive", keep_session_alive, methods=["POST"])
    router.add_api_route("/sessions", list_sessions, methods=["GET"])
    router.add_api_route("/sessions", close_session, methods=["DELETE"])
    router.add_api_route("/sessions/{session_id}", get_session, methods=["GET"])
    router.add_api_route("/sessions/{session_id}/transcript", get_transcript, methods=["GET"])
    router.add_api_route("/sessions/{session_id}/events", delete_session_events, methods=["DELETE"])
    router.add_api_route("/avatars/public", list_public_avatars, methods=["GET"])
    router.add_api_route("/avatars", list_avatars, methods=["GET"])
    router.add_api_route("/avatars/{avatar_id}", get_avatar, methods=["GET"])
    return router


def _say(session: LiveAvatarSession, role: str, text: str, now: float) -> None:
    started = session.started_at or now
    session.transcript.append(
        {
            "role": role,
            "transcript": text,
            "absolute_timestamp": int(now),
            "relative_timestamp": int(now - started),
        }
    )


# -- LITE websocket -----------------------------------------------------------------------------


async def lite_events(websocket: WebSocket, session_id: str) -> None:
    state = emulator_state(websocket)
    session = state.liveavatar.sessions.get(session_id)
    token = websocket.query_params.get("token", "")
    if session is not None:
        _refresh(websocket, session)
    if (
        session is None
        or not secrets.compare_digest(token, session.ws_token)
        or session.mode != "LITE"
        or not session.active
    ):
        await websocket.close(code=1008, reason="unknown or inactive LITE session")
        return
    await websocket.accept()
    lite = _LiteConnection(websocket, session)
    await lite.send("session.state_updated", state="connected")
    try:
        while True:
            text = await websocket.receive_text()
            if not await lite.handle(text):
                break
    except WebSocketDisconnect:
        return


def build_websocket_router() -> APIRouter:
    router = APIRouter()
    router.add_api_websocket_route("/ws/liveavatar/{session_id}", lite_events)
    return router


class _LiteConnection:
    """One LITE websocket: the avatar's speaking/listening state machine."""

    def __init__(self, websocket: WebSocket, session: LiveAvatarSession) -> None:
        self.websocket = websocket
        self.session = session
        self.agent_state = "idle"
        self.task_id: str | None = None
        #: The event_id of the agent.speak that started the task, echoed on its start and end.
        self.speak_event_id: str | None = None

    async def send(self, kind: str, *, event_id: str | None = None, **fields: Any) -> None:
        await self.websocket.send_json(
            {"type": kind, "event_id": event_id or str(uuid.uuid4()), **fields}
        )

    async def _become(self, new_state: str) -> None:
        if new_state != self.agent_state:
            previous, self.agent_state = self.agent_state, new_state
            await self.send("agent.state_updated", previous_state=previous, state=new_state)

    async def handle(self, text: str) -> bool:
        """Handle one command; ``False`` once the connection should close."""
        state = emulator_state(self.websocket)
        _refresh(self.websocket, self.session)
        if not self.session.active:
            await self.send("session.state_updated", state="closing")
            await self.send("session.state_updated", state="closed")
            await self.websocket.close(code=1000)
            return False
        self.session.last_activity = state.clock()
        try:
            command = json.loads(text)
        except ValueError:
            await self.send("error", error="frames must be JSON objects with a 'type'")
            return True
        kind = command.get("type") if isinstance(command, dict) else None
        event_id = command.get("event_id") if isinstance(command, dict) else None
        if kind == "agent.speak":
            audio = command.get("audio")
            if not isinstance(audio, str):
                await self.send(
                    "error", error="agent.speak needs 'audio': base64 PCM 16-bit 24 kHz"
                )
                return True
            if len(audio) * 3 // 4 > MAX_AUDIO_PACKET:
                await self.send("error", error="audio packet larger than 1 MB")
                await self.websocket.close(code=1009)
                return False
            try:
                base64.b64decode(audio, validate=True)
            except (binascii.Error, ValueError):
                await self.send("error", error="agent.speak 'audio' is not valid base64")
                return True
            if self.task_id is None:
                self.task_id = str(uuid.uuid4())
                self.speak_event_id = event_id if isinstance(event_id, str) else None
                await self.send(
                    "agent.speak_started", event_id=self.speak_event_id, task={"id": self.task_id}
                )
                await self._become("talking")
            await self.send("agent.audio_buffer_appended", task={"id": self.task_id})
        elif kind == "agent.speak_end":
            if self.task_id is not None:
                await self.send("agent.audio_buffer_committed", task={"id": self.task_id})
                await self.send(
                    "agent.speak_ended", event_id=self.speak_event_id, task={"id": self.task_id}
                )
                self.task_id = self.speak_event_id = None
                await self._become("idle")
        elif kind == "agent.interrupt":
            if self.task_id is not None:
                await self.send(
                    "agent.speak_interrupted",
                    event_id=self.speak_event_id,
                    task={"id": self.task_id},
                )
                await self.send("agent.audio_buffer_cleared")
                self.task_id = self.speak_event_id = None
            await self._become("idle")
        elif kind == "agent.start_listening":
            await self._become("listening")
        elif kind == "agent.stop_listening":
            await self._become("idle")
        elif kind == "session.keep_alive":
            pass  # last_activity was just moved
        else:
            await self.send("warning", warning=f"unknown command type {kind!r}", source=event_id)
        return True


def _error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, LiveAvatarHTTPError)
    return liveavatar_error(exc.status, exc.message)


def exception_handlers() -> dict[type[Exception], Any]:
    return {LiveAvatarHTTPError: _error_handler}


API = EmulatedAPI(
    name="liveavatar",
    title="LiveAvatar",
    prefixes=("/v1/", "/ws/liveavatar/"),
    exact=("/v1",),
    error=lambda status, message, headers: liveavatar_error(status, message, headers),
    routers=lambda: [build_router()],
    extra_routers=lambda: [build_websocket_router()],
    exception_handlers=exception_handlers,
    new_store=lambda agent, clock: LiveAvatarStore(),
    default_limit="20/1s",
    limit_help=(
        "default 20/1s: a fixed window per caller and endpoint, Retry-After and "
        "X-RateLimit-Reset seconds on a 429"
    ),
    caller_key=bearer_or_api_key,
    publish="retry-after",  # Retry-After and X-RateLimit-Reset seconds on a 429
    scope="endpoint",
    rate_limited_message="Too many requests. Retry after the time given in Retry-After.",
    too_many_concurrent_message="Too many concurrent requests.",
    reset_on_refusal=True,
)
