"""LiveAvatar's request and response bodies, and the LITE websocket's events.

Request models check every documented field and limit before anything is sent (a session costs
credits from the moment it starts, so a bad configuration should fail on this side). Response
models tolerate fields they do not know, and keep enumerations the vendor may extend as strings.

Secrets inside models (session tokens, LiveKit and Agora tokens) are ``SecretStr``: they print as
``**********`` and serialise that way too. Only :meth:`FullSessionConfig.to_body` and
:meth:`LiteSessionConfig.to_body` reveal them, to build the request that needs them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from prefect_sessions.errors import ConfigurationError

# -- vocabularies (the OpenAPI's enums) ---------------------------------------------------------

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
SessionListType = Literal["active", "historic"]
InteractivityType = Literal["CONVERSATIONAL", "PUSH_TO_TALK"]
VideoQuality = Literal["very_high", "high", "medium", "low"]
VideoEncoding = Literal["VP8", "H264"]
ElevenLabsModel = Literal["eleven_flash_v2_5", "eleven_multilingual_v2"]
FishAudioModel = Literal["s1", "s2"]
STTProvider = Literal["deepgram", "assembly_ai", "gladia", "elevenlabs"]
OpenAIRealtimeVoice = Literal[
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "shimmer",
    "sage",
    "verse",
    "marin",
    "cedar",
]
GeminiRealtimeVoice = Literal[
    "Achernar",
    "Achird",
    "Algenib",
    "Algieba",
    "Alnilam",
    "Aoede",
    "Autonoe",
    "Callirrhoe",
    "Charon",
    "Despina",
    "Enceladus",
    "Erinome",
    "Fenrir",
    "Gacrux",
    "Iapetus",
    "Kore",
    "Laomedeia",
    "Leda",
    "Orus",
    "Pulcherrima",
    "Puck",
    "Rasalgethi",
    "Sadachbia",
    "Sadaltager",
    "Schedar",
    "Sulafat",
    "Umbriel",
    "Vindemiatrix",
    "Zephyr",
    "Zubenelgenubi",
]
GeminiRealtimeModel = Literal[
    "gemini-2.5-flash-native-audio-preview-12-2025", "gemini-3.1-flash-live-preview"
]

#: Documented limits of ``dynamic_variables`` (FULL mode).
MAX_DYNAMIC_VARIABLES = 50
MAX_DYNAMIC_VARIABLE_KEY = 64
MAX_DYNAMIC_VARIABLE_VALUE = 1000


_END_REASONS: tuple[str, ...] = get_args(SessionEndReason)


def checked_session_id(session_id: str | UUID) -> str:
    """The session ID in canonical form, or a :class:`ConfigurationError` before any request."""
    try:
        return str(session_id if isinstance(session_id, UUID) else UUID(str(session_id)))
    except ValueError:
        raise ConfigurationError(
            f"session_id must be the UUID LiveAvatar gave the session (from create_session_token "
            f"or list_sessions), got {str(session_id)[:60]!r}"
        ) from None


def checked_end_reason(reason: str) -> SessionEndReason:
    """``reason`` if LiveAvatar knows it, else a :class:`ConfigurationError` naming the choices."""
    if reason not in _END_REASONS:
        raise ConfigurationError(
            f"reason must be one of {', '.join(_END_REASONS)}; got {str(reason)[:40]!r}"
        )
    return reason  # type: ignore[return-value]


def _reveal(value: SecretStr, info: SerializationInfo) -> str | SecretStr:
    # Secrets leave the model in plain text only for the request body (context set by to_body);
    # every other dump (repr, Prefect parameters, logs) keeps them masked.
    context = info.context
    if isinstance(context, Mapping) and context.get("reveal_secrets"):
        return value.get_secret_value()
    return value


class _Request(BaseModel):
    """A request body: unknown fields are typos, so they are refused.

    Validation errors never echo the input: a config can carry LiveKit or Agora tokens.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


# -- token configuration: shared parts ------------------------------------------------------------


class VideoSettings(_Request):
    """Video encoding of the avatar's stream."""

    quality: VideoQuality = "high"
    encoding: VideoEncoding = "H264"


class ElevenLabsVoiceSettings(_Request):
    """ElevenLabs text-to-speech settings (FULL mode ``avatar_persona.voice_settings``)."""

    provider: Literal["elevenLabs"] = "elevenLabs"
    speed: float = Field(default=1.0, ge=0.8, le=1.2)
    stability: float = Field(default=0.75, ge=0.0, le=1.0)
    similarity_boost: float = Field(default=0.75, ge=0.0, le=1.0)
    style: float = Field(default=0.0, ge=0.0, le=1.0)
    use_speaker_boost: bool = True
    model: ElevenLabsModel = "eleven_flash_v2_5"
    apply_language_text_normalization: bool = Field(
        default=False, description="Japanese text normalisation; only valid with language 'ja'."
    )


class FishAudioVoiceSettings(_Request):
    """Fish Audio text-to-speech settings (FULL mode ``avatar_persona.voice_settings``)."""

    provider: Literal["fish"] = "fish"
    speed: float = Field(default=1.0, ge=0.8, le=1.2)
    model: FishAudioModel = "s2"
    latency_mode: Literal["normal", "balanced"] = "balanced"


VoiceSettings = Annotated[
    ElevenLabsVoiceSettings | FishAudioVoiceSettings, Field(discriminator="provider")
]


class STTConfig(_Request):
    """Speech-to-text provider override."""

    provider: STTProvider


class AvatarPersona(_Request):
    """Who the FULL-mode avatar is: voice, context (prompt), language, TTS and STT settings."""

    voice_id: UUID | None = Field(default=None, description="Empty uses the avatar's voice.")
    context_id: UUID | None = None
    language: str = Field(default="en", min_length=1)
    voice_settings: VoiceSettings | None = None
    stt_config: STTConfig | None = None

    @model_validator(mode="after")
    def _normalisation_needs_japanese(self) -> AvatarPersona:
        settings = self.voice_settings
        if (
            isinstance(settings, ElevenLabsVoiceSettings)
            and settings.apply_language_text_normalization
            and self.language != "ja"
        ):
            raise ValueError(
                "voice_settings.apply_language_text_normalization only works with language 'ja' "
                f"(got {self.language!r}): set language='ja' or leave normalisation off"
            )
        return self


class MemoryRef(_Request):
    """Session memory to attach: from a previous FULL session, an existing memory, or both."""

    prev_session_id: UUID | None = None
    session_memory_id: UUID | None = None

    @model_validator(mode="after")
    def _one_reference(self) -> MemoryRef:
        if self.prev_session_id is None and self.session_memory_id is None:
            raise ValueError(
                "memory needs prev_session_id or session_memory_id (or both): leave memory out "
                "to start without one"
            )
        return self


class _TokenConfig(_Request):
    avatar_id: UUID
    is_sandbox: bool = Field(
        default=False,
        description="Sandbox sessions are free, end after about a minute, and only accept the "
        "sandbox avatar.",
    )
    video_settings: VideoSettings | None = None
    max_session_duration: int | None = Field(
        default=None, gt=0, description="Seconds; at most your subscription tier's limit."
    )

    def to_body(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/sessions/token``, secrets included."""
        body: dict[str, Any] = self.model_dump(
            mode="json", exclude_none=True, context={"reveal_secrets": True}
        )
        return body


# -- FULL mode ------------------------------------------------------------------------------------


def _checked_dynamic_variables(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_DYNAMIC_VARIABLES:
        raise ValueError(
            f"at most {MAX_DYNAMIC_VARIABLES} entries are allowed, got {len(value)}: pass "
            "only the variables the context's prompt and opening text use"
        )
    for key, text in value.items():
        if len(key) > MAX_DYNAMIC_VARIABLE_KEY:
            raise ValueError(
                f"key {key[:20]!r}... is {len(key)} characters; keys may have at most "
                f"{MAX_DYNAMIC_VARIABLE_KEY}: rename the placeholder"
            )
        if len(text) > MAX_DYNAMIC_VARIABLE_VALUE:
            raise ValueError(
                f"value of {key!r} is {len(text)} characters; values may have at most "
                f"{MAX_DYNAMIC_VARIABLE_VALUE}: shorten it or move it into the context"
            )
    return value


class VoiceAgentRef(_Request):
    """A stored voice agent (built in LiveAvatar's dashboard) by its id: the persona without
    wiring voice, context and language on every request. The server resolves the agent's type:
    a ``liveavatar_agent`` runs FULL, an ``elevenlabs_agent`` runs LITE even from a FULL token.
    """

    id: UUID
    language: str | None = Field(default=None, min_length=1)
    dynamic_variables: dict[str, str] | None = None

    @field_validator("dynamic_variables")
    @classmethod
    def _within_documented_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return _checked_dynamic_variables(value)


class FullSessionConfig(_TokenConfig):
    """A FULL-mode session: LiveAvatar runs the whole conversation (STT, LLM, TTS). Its persona
    is either inline (``avatar_persona``, which the vendor now marks deprecated) or a stored
    voice agent (``voice_agent``); exactly one is given.

    Example:
        ```python
        config = FullSessionConfig(
            avatar_id="dd73ea75-1218-4ef3-92ce-606d5f7fbc0a",
            avatar_persona=AvatarPersona(context_id=context_id, language="en"),
            dynamic_variables={"customer_name": "Ada"},
            is_sandbox=True,
        )
        stored = FullSessionConfig(avatar_id=avatar_id, voice_agent=VoiceAgentRef(id=agent_id))
        ```
    """

    mode: Literal["FULL"] = "FULL"
    avatar_persona: AvatarPersona | None = None
    voice_agent: VoiceAgentRef | None = None
    interactivity_type: InteractivityType = "CONVERSATIONAL"
    llm_configuration_id: UUID | None = None
    dynamic_variables: dict[str, str] | None = Field(
        default=None,
        description=f"Values for ${{var}} placeholders in the context; at most "
        f"{MAX_DYNAMIC_VARIABLES} entries, keys up to {MAX_DYNAMIC_VARIABLE_KEY} characters, "
        f"values up to {MAX_DYNAMIC_VARIABLE_VALUE}.",
    )
    memory: MemoryRef | None = None

    @field_validator("dynamic_variables")
    @classmethod
    def _within_documented_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return _checked_dynamic_variables(value)

    @model_validator(mode="after")
    def _one_persona(self) -> FullSessionConfig:
        if (self.avatar_persona is None) == (self.voice_agent is None):
            raise ValueError(
                "give avatar_persona (an inline voice and context) or voice_agent (a stored "
                "voice agent's id), not both and not neither: LiveAvatar refuses either mistake"
            )
        return self


# -- LITE mode ------------------------------------------------------------------------------------


class LiveKitConfig(_Request):
    """Your own LiveKit room for the avatar to join (instead of one LiveAvatar hosts)."""

    livekit_url: str = Field(min_length=1)
    livekit_room: str = Field(min_length=1)
    livekit_client_token: SecretStr = Field(description="Token the avatar joins the room with.")

    @field_serializer("livekit_client_token")
    def _token(self, value: SecretStr, info: SerializationInfo) -> str | SecretStr:
        return _reveal(value, info)


class AgoraConfig(_Request):
    """An Agora channel as the transport instead of LiveKit."""

    agora_app_id: str = Field(min_length=1)
    agora_token: SecretStr
    agora_channel: str = Field(min_length=1)
    agora_uid: str = Field(min_length=1)

    @field_serializer("agora_token")
    def _token(self, value: SecretStr, info: SerializationInfo) -> str | SecretStr:
        return _reveal(value, info)


class ElevenLabsAgentConfig(_Request):
    """An ElevenLabs Agent drives the avatar; its API key is a LiveAvatar secret, by ID."""

    secret_id: UUID = Field(description="ID of the space secret holding ELEVENLABS_API_KEY.")
    agent_id: str = Field(min_length=1)
    voice_id: str | None = None
    dynamic_variables: dict[str, str | int | float | bool] | None = None


class OpenAIRealtimeConfig(_Request):
    """OpenAI's Realtime API drives the avatar; its API key is a LiveAvatar secret, by ID."""

    secret_id: UUID = Field(description="ID of the space secret holding OPENAI_API_KEY.")
    context_id: UUID | None = None
    voice: OpenAIRealtimeVoice = "alloy"
    temperature: float = Field(default=0.8, ge=0.6, le=1.2)
    model: str = Field(default="gpt-realtime", min_length=1)


class GeminiRealtimeConfig(_Request):
    """Gemini's Live API drives the avatar; its API key is a LiveAvatar secret, by ID."""

    secret_id: UUID = Field(description="ID of the space secret holding GEMINI_API_KEY.")
    context_id: UUID | None = None
    voice: GeminiRealtimeVoice = "Puck"
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    model: GeminiRealtimeModel = "gemini-3.1-flash-live-preview"


class CartesiaAgentConfig(_Request):
    """A Cartesia (Line) agent drives the avatar; its API key is a LiveAvatar secret, by ID. The
    agent's voice, prompt and language are set on Cartesia's side."""

    secret_id: UUID = Field(description="ID of the space secret holding CARTESIA_API_KEY.")
    agent_id: str = Field(min_length=1)


_TRANSPORTS = ("livekit_config", "agora_config")
#: The connectors: a hosted agent converses, and the session has no LITE websocket.
_AGENTS = (
    "elevenlabs_agent_config",
    "openai_realtime_config",
    "gemini_realtime_config",
    "cartesia_agent_config",
)


class LiteSessionConfig(_TokenConfig):
    """A LITE-mode session: LiveAvatar only renders video from audio you (or a hosted agent) send.

    Choose at most one transport (your LiveKit room or Agora; LiveAvatar hosts a LiveKit room
    otherwise) and at most one hosted agent, a connector (ElevenLabs, OpenAI Realtime, Gemini or
    Cartesia; without one, your code speaks through the session's websocket, see
    :class:`LiteSocket`).
    """

    mode: Literal["LITE"] = "LITE"
    livekit_config: LiveKitConfig | None = None
    agora_config: AgoraConfig | None = None
    elevenlabs_agent_config: ElevenLabsAgentConfig | None = None
    openai_realtime_config: OpenAIRealtimeConfig | None = None
    gemini_realtime_config: GeminiRealtimeConfig | None = None
    cartesia_agent_config: CartesiaAgentConfig | None = None

    @property
    def connector(self) -> bool:
        """Whether a hosted agent (a connector) converses: the session then has a LiveKit room
        and no websocket (``StartedSession.ws_url`` is None), and uses FULL mode's events."""
        return any(getattr(self, name) is not None for name in _AGENTS)

    @model_validator(mode="after")
    def _one_transport_one_agent(self) -> LiteSessionConfig:
        # The API describes each option as replacing the default; two at once cannot both apply.
        for group, what in ((_TRANSPORTS, "transport"), (_AGENTS, "agent")):
            chosen = [name for name in group if getattr(self, name) is not None]
            if len(chosen) > 1:
                raise ValueError(
                    f"{' and '.join(chosen)} are both set, but a LITE session has one {what}: "
                    "keep one of them"
                )
        return self


SessionConfig = Annotated[FullSessionConfig | LiteSessionConfig, Field(discriminator="mode")]


# -- responses ------------------------------------------------------------------------------------


class _Response(BaseModel):
    """A response body: fields the docs do not list yet are kept, never an error."""

    model_config = ConfigDict(extra="allow", frozen=True, hide_input_in_errors=True)


class SessionToken(_Response):
    """A minted session: its ID and the token that starts it (hand it out explicitly)."""

    session_id: str
    session_token: SecretStr


class StartedSession(_Response):
    """A started session and how to join it.

    The LiveKit tokens are credentials: pass them to a frontend or agent with
    ``.get_secret_value()``. ``ws_url`` (LITE mode) is kept out of ``repr`` because such URLs
    usually carry their own access token.
    """

    session_id: str
    livekit_url: str | None = None
    livekit_client_token: SecretStr | None = None
    livekit_agent_token: SecretStr | None = None
    max_session_duration: int | None = None
    ws_url: str | None = Field(default=None, repr=False)


class SessionEntry(_Response):
    """One session from the list or get endpoints; historic sessions add ``end_at``/``end_reason``.

    ``source`` (DEMO, APP, API, EMBED), ``mode`` (FULL, LITE) and ``end_reason`` are kept as the
    server's strings, so a value added by the vendor does not break reading.
    """

    id: str
    created_at: datetime
    updated_at: datetime
    duration: int
    source: str
    mode: str
    is_sandbox: bool
    credits_consumed: float
    end_at: datetime | None = None
    end_reason: str | None = None


class SessionPage(_Response):
    """One page of ``GET /v1/sessions``."""

    count: int
    next: str | None = None
    previous: str | None = None
    results: list[SessionEntry]


class TranscriptEntry(_Response):
    """One utterance: ``role`` is ``user`` or ``avatar``; timestamps as LiveAvatar gives them."""

    role: str
    transcript: str
    absolute_timestamp: int
    relative_timestamp: int


class TranscriptPage(_Response):
    """One page of ``GET /v1/sessions/{id}/transcript``."""

    session_active: bool
    next_timestamp: int | None = None
    transcript_data: list[TranscriptEntry]


class Transcript(BaseModel):
    """A session's transcript, every page of it.

    ``next_timestamp`` is where to resume (``start_timestamp=``) for an active session's later
    utterances; ``None`` when the server said there is nothing more.
    """

    model_config = ConfigDict(frozen=True)

    session_id: str
    session_active: bool
    entries: list[TranscriptEntry]
    next_timestamp: int | None = None
    pages: int = Field(description="How many requests it took.")


# -- the LITE websocket's server events -----------------------------------------------------------


class LiteEvent(BaseModel):
    """An event the LITE websocket sent. Unknown types arrive as this class, every field kept.

    A frame that is not a JSON object arrives as ``type="unparsed"`` with the text in ``raw``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    event_id: str | None = None

    @property
    def fields(self) -> dict[str, Any]:
        """Every field of the event as received."""
        return self.model_dump(exclude_unset=True)


class SessionStateUpdated(LiteEvent):
    """``session.state_updated``: ``connecting``, ``connected``, ``closing`` or ``closed``."""

    type: Literal["session.state_updated"]
    state: str


class AgentSpeakStarted(LiteEvent):
    """``agent.speak_started``: the avatar began speaking audio sent under ``event_id``."""

    type: Literal["agent.speak_started"]
    task: dict[str, Any] | None = None


class AgentSpeakEnded(LiteEvent):
    """``agent.speak_ended``: the avatar finished speaking (always after ``speak_started``)."""

    type: Literal["agent.speak_ended"]
    task: dict[str, Any] | None = None


class AgentSpeakInterrupted(LiteEvent):
    """``agent.speak_interrupted``: speech was cut short by ``agent.interrupt``."""

    type: Literal["agent.speak_interrupted"]


class AgentStateUpdated(LiteEvent):
    """``agent.state_updated``: ``idle``, ``listening`` or ``talking``."""

    type: Literal["agent.state_updated"]
    previous_state: str | None = None
    new_state: str | None = None
    state: str | None = None


class LiteErrorEvent(LiteEvent):
    """``error``: the server rejected a command; the session may continue."""

    type: Literal["error"]
    error: Any = None


class LiteWarningEvent(LiteEvent):
    """``warning``: something to know about, not a failure."""

    type: Literal["warning"]
    warning: Any = None


_EVENT_TYPES: dict[str, type[LiteEvent]] = {
    "session.state_updated": SessionStateUpdated,
    "agent.speak_started": AgentSpeakStarted,
    "agent.speak_ended": AgentSpeakEnded,
    "agent.speak_interrupted": AgentSpeakInterrupted,
    "agent.state_updated": AgentStateUpdated,
    "error": LiteErrorEvent,
    "warning": LiteWarningEvent,
}


def parse_lite_event(frame: str | bytes) -> LiteEvent:
    """Read one websocket frame into an event; never raises, never drops a field."""
    text = frame.decode("utf-8", errors="replace") if isinstance(frame, bytes) else frame
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        model = _EVENT_TYPES.get(str(payload.get("type")), LiteEvent)
        # A known type with an unexpected shape is still kept, as a generic event.
        for candidate in (model, LiteEvent):
            try:
                return candidate.model_validate(payload)
            except ValidationError:
                continue
    return LiteEvent(type="unparsed", raw=text)
