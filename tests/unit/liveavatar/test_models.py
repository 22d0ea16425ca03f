"""LiveAvatar request models: every documented field and limit, checked before anything is sent;
bodies that fit the vendor OpenAPI; secrets that never print; events that are never dropped."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from prefect_sessions.errors import ConfigurationError
from prefect_sessions.liveavatar import (
    AgentSpeakStarted,
    AgentStateUpdated,
    AgoraConfig,
    AvatarPersona,
    ElevenLabsAgentConfig,
    ElevenLabsVoiceSettings,
    FishAudioVoiceSettings,
    FullSessionConfig,
    GeminiRealtimeConfig,
    LiteErrorEvent,
    LiteEvent,
    LiteSessionConfig,
    LiveKitConfig,
    MemoryRef,
    OpenAIRealtimeConfig,
    SessionStateUpdated,
    StartedSession,
    STTConfig,
    VideoSettings,
    parse_lite_event,
)
from prefect_sessions.liveavatar.models import checked_end_reason, checked_session_id
from tests.support.liveavatar_app import request_schema
from tests.support.liveavatar_fixtures import AVATAR_ID, CONTEXT_ID, SECRET_ID


class _TokenBody:
    """The token request body of the OpenAPI, read on validate (skips without the OpenAPI)."""

    def validate(self, body: object) -> None:
        request_schema("/v1/sessions/token").validate(body)


TOKEN_BODY = _TokenBody()
CANARY = "CANARY-livekit-byo-token-93af"


def full(**fields: object) -> FullSessionConfig:
    return FullSessionConfig(avatar_id=AVATAR_ID, avatar_persona=AvatarPersona(), **fields)


def test_a_full_config_with_every_documented_field_fits_the_openapi():
    config = FullSessionConfig(
        avatar_id=AVATAR_ID,
        is_sandbox=True,
        video_settings=VideoSettings(quality="very_high", encoding="VP8"),
        max_session_duration=600,
        avatar_persona=AvatarPersona(
            voice_id=SECRET_ID,
            context_id=CONTEXT_ID,
            language="ja",
            voice_settings=ElevenLabsVoiceSettings(
                speed=1.2,
                stability=0.5,
                similarity_boost=0.9,
                style=0.1,
                use_speaker_boost=False,
                model="eleven_multilingual_v2",
                apply_language_text_normalization=True,
            ),
            stt_config=STTConfig(provider="gladia"),
        ),
        interactivity_type="PUSH_TO_TALK",
        llm_configuration_id=SECRET_ID,
        dynamic_variables={"customer_name": "Ada"},
        memory=MemoryRef(prev_session_id=CONTEXT_ID, session_memory_id=SECRET_ID),
    )
    body = config.to_body()
    TOKEN_BODY.validate(body)
    assert body["mode"] == "FULL"
    assert body["avatar_persona"]["voice_settings"]["provider"] == "elevenLabs"
    assert body["avatar_persona"]["stt_config"] == {"provider": "gladia"}


LIVEKIT = LiveKitConfig(
    livekit_url="wss://x", livekit_room="r", livekit_client_token=SecretStr(CANARY)
)
AGORA = AgoraConfig(
    agora_app_id="a", agora_token=SecretStr(CANARY), agora_channel="c", agora_uid="7"
)
ELEVENLABS = ElevenLabsAgentConfig(
    secret_id=SECRET_ID,
    agent_id="agent_1",
    voice_id="v",
    dynamic_variables={"n": 1, "ok": True, "x": 1.5, "s": "t"},
)
OPENAI = OpenAIRealtimeConfig(
    secret_id=SECRET_ID, context_id=CONTEXT_ID, voice="marin", temperature=0.6
)
GEMINI = GeminiRealtimeConfig(
    secret_id=SECRET_ID,
    voice="Zephyr",
    temperature=2.0,
    model="gemini-2.5-flash-native-audio-preview-12-2025",
)


@pytest.mark.parametrize(
    "extra",
    [
        {"livekit_config": LIVEKIT},
        {"agora_config": AGORA},
        {"elevenlabs_agent_config": ELEVENLABS},
        {"openai_realtime_config": OPENAI},
        {"gemini_realtime_config": GEMINI},
        {"livekit_config": LIVEKIT, "openai_realtime_config": OPENAI},
    ],
    ids=["livekit", "agora", "elevenlabs", "openai", "gemini", "livekit+openai"],
)
def test_lite_configs_fit_the_openapi_and_reveal_tokens_only_in_the_body(extra):
    config = LiteSessionConfig(avatar_id=AVATAR_ID, is_sandbox=True, **extra)
    body = config.to_body()
    TOKEN_BODY.validate(body)
    assert body["mode"] == "LITE"
    assert CANARY not in repr(config)
    assert CANARY not in config.model_dump_json()
    if "livekit_config" in extra:
        assert body["livekit_config"]["livekit_client_token"] == CANARY
    if "agora_config" in extra:
        assert body["agora_config"]["agora_token"] == CANARY


def test_elevenlabs_agent_variables_keep_their_json_types():
    config = ElevenLabsAgentConfig(
        secret_id=SECRET_ID, agent_id="a", dynamic_variables={"n": 1, "ok": True, "x": 1.5}
    )
    assert LiteSessionConfig(avatar_id=AVATAR_ID, elevenlabs_agent_config=config).to_body()[
        "elevenlabs_agent_config"
    ]["dynamic_variables"] == {"n": 1, "ok": True, "x": 1.5}


def test_voice_settings_are_discriminated_by_provider():
    persona = AvatarPersona.model_validate({"voice_settings": {"provider": "fish", "model": "s1"}})
    assert isinstance(persona.voice_settings, FishAudioVoiceSettings)
    with pytest.raises(ValidationError, match="provider"):
        AvatarPersona.model_validate({"voice_settings": {"speed": 1.0}})
    with pytest.raises(ValidationError, match="latency_mode"):
        AvatarPersona.model_validate(
            {"voice_settings": {"provider": "elevenLabs", "latency_mode": "normal"}}
        )


@pytest.mark.parametrize(
    ("model", "fields", "named"),
    [
        (ElevenLabsVoiceSettings, {"speed": 1.3}, "speed"),
        (ElevenLabsVoiceSettings, {"stability": -0.1}, "stability"),
        (FishAudioVoiceSettings, {"speed": 0.7}, "speed"),
        (OpenAIRealtimeConfig, {"secret_id": SECRET_ID, "temperature": 0.5}, "temperature"),
        (GeminiRealtimeConfig, {"secret_id": SECRET_ID, "temperature": 2.1}, "temperature"),
        (GeminiRealtimeConfig, {"secret_id": SECRET_ID, "voice": "alloy"}, "voice"),
        (VideoSettings, {"quality": "ultra"}, "quality"),
        (STTConfig, {"provider": "whisper"}, "provider"),
        (ElevenLabsAgentConfig, {"secret_id": "not-a-uuid", "agent_id": "a"}, "secret_id"),
    ],
)
def test_out_of_range_values_name_their_field(model, fields, named):
    with pytest.raises(ValidationError, match=named):
        model.model_validate(fields)


def test_dynamic_variables_enforce_the_documented_limits():
    at_limits = {f"k{i:02d}".ljust(64, "x"): "v" * 1000 for i in range(50)}
    TOKEN_BODY.validate(full(dynamic_variables=at_limits).to_body())
    with pytest.raises(ValidationError, match="at most 50 entries"):
        full(dynamic_variables={f"k{i}": "v" for i in range(51)})
    with pytest.raises(ValidationError, match="at most 64"):
        full(dynamic_variables={"k" * 65: "v"})
    with pytest.raises(ValidationError, match="at most 1000"):
        full(dynamic_variables={"bio": "v" * 1001})


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=64),
        st.text(max_size=1000),
        max_size=50,
    )
)
def test_any_variables_within_the_limits_make_a_valid_body(variables):
    body = full(dynamic_variables=variables).to_body()
    TOKEN_BODY.validate(body)
    assert json.loads(json.dumps(body))["dynamic_variables"] == variables


def test_contradictory_or_incomplete_configs_fail_before_sending():
    livekit = LiveKitConfig(livekit_url="wss://x", livekit_room="r", livekit_client_token="t")
    agora = AgoraConfig(agora_app_id="a", agora_token="t", agora_channel="c", agora_uid="u")
    with pytest.raises(ValidationError, match="livekit_config and agora_config"):
        LiteSessionConfig(avatar_id=AVATAR_ID, livekit_config=livekit, agora_config=agora)
    with pytest.raises(ValidationError, match="one agent"):
        LiteSessionConfig(
            avatar_id=AVATAR_ID,
            openai_realtime_config=OpenAIRealtimeConfig(secret_id=SECRET_ID),
            gemini_realtime_config=GeminiRealtimeConfig(secret_id=SECRET_ID),
        )
    with pytest.raises(ValidationError, match="prev_session_id or session_memory_id"):
        MemoryRef()
    with pytest.raises(ValidationError, match="language='ja'"):
        AvatarPersona(
            voice_settings=ElevenLabsVoiceSettings(apply_language_text_normalization=True)
        )
    with pytest.raises(ValidationError, match="avatar_persona"):
        FullSessionConfig(avatar_id=AVATAR_ID)
    with pytest.raises(ValidationError, match="max_session_duration"):
        full(max_session_duration=0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        full(avatar_persona_typo={})


def test_validation_errors_never_echo_a_token():
    with pytest.raises(ValidationError) as caught:
        LiteSessionConfig.model_validate(
            {
                "avatar_id": AVATAR_ID,
                "livekit_config": {"livekit_url": "wss://x", "livekit_client_token": CANARY},
            }
        )
    assert "livekit_room" in str(caught.value)
    assert CANARY not in str(caught.value)


def test_started_sessions_keep_tokens_and_the_websocket_url_out_of_sight():
    started = StartedSession.model_validate(
        {
            "session_id": "s",
            "livekit_url": "wss://lk",
            "livekit_client_token": CANARY + "-client",
            "livekit_agent_token": CANARY + "-agent",
            "ws_url": "wss://ws?token=" + CANARY,
            "new_field": 1,
        }
    )
    assert CANARY not in repr(started)
    assert CANARY not in str(started)
    assert CANARY not in started.model_dump_json(exclude={"ws_url"})
    assert started.livekit_client_token is not None
    assert started.livekit_client_token.get_secret_value() == CANARY + "-client"
    assert started.model_extra == {"new_field": 1}


def test_session_ids_and_end_reasons_are_checked_with_a_fix_in_the_message():
    assert checked_session_id(AVATAR_ID.upper()) == AVATAR_ID
    with pytest.raises(ConfigurationError, match="session_id must be the UUID"):
        checked_session_id("../../v1/avatars")
    assert checked_end_reason("AGENT_HANG_UP") == "AGENT_HANG_UP"
    with pytest.raises(ConfigurationError, match="USER_CLOSED"):
        checked_end_reason("DONE")


def test_lite_events_are_typed_and_unknown_ones_arrive_whole():
    state = parse_lite_event('{"type": "session.state_updated", "state": "connected"}')
    assert isinstance(state, SessionStateUpdated)
    assert state.state == "connected"
    started = parse_lite_event(b'{"type":"agent.speak_started","event_id":"e1","task":{"id":"t"}}')
    assert isinstance(started, AgentSpeakStarted)
    assert started.task == {"id": "t"}
    agent = parse_lite_event('{"type":"agent.state_updated","state":"talking"}')
    assert isinstance(agent, AgentStateUpdated)
    assert agent.state == "talking"
    error = parse_lite_event('{"type":"error","error":{"message":"bad audio"}}')
    assert isinstance(error, LiteErrorEvent)
    assert error.error == {"message": "bad audio"}

    unknown = parse_lite_event('{"type":"agent.audio_buffer_committed","event_id":"e","n":[1]}')
    assert type(unknown) is LiteEvent
    assert unknown.fields == {"type": "agent.audio_buffer_committed", "event_id": "e", "n": [1]}
    odd_shape = parse_lite_event('{"type":"session.state_updated","phase":"x"}')
    assert type(odd_shape) is LiteEvent
    assert odd_shape.fields["phase"] == "x"
    for frame in ("not json", "[1, 2]", '{"no_type": 1}', '{"type": "x", "event_id": 5}'):
        event = parse_lite_event(frame)
        assert event.type == "unparsed"
        assert event.fields["raw"] == frame
