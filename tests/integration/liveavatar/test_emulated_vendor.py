"""LiveAvatar as it is documented today, against the emulator over real HTTP: keep-alive and stop
go out with each session's own token (Bearer), so every session spends its own rate budget, the
API key being only the fallback for a session whose token is gone; the demo app's teardown;
connector sessions without a websocket; the LITE socket echoing the speak's event_id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from uuid import uuid4

import anyio
import pytest
from pydantic import SecretStr

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, run_emulator
from prefect_sessions.liveavatar import (
    AvatarPersona,
    CartesiaAgentConfig,
    FullSessionConfig,
    LiteSessionConfig,
    LiveAvatarCredentials,
    VoiceAgentRef,
)
from prefect_sessions.liveavatar.adapter import SANDBOX_AVATAR_ID, LiveAvatarAdapter
from prefect_sessions.seam.adapter import ConnectionSettings
from prefect_sessions.seam.turns import Turn

API_KEY = "la-token-budget-key"
FULL = FullSessionConfig(
    avatar_id=SANDBOX_AVATAR_ID, avatar_persona=AvatarPersona(), is_sandbox=True
)
#: The emulator's stored FULL-mode voice agent (``VOICE_AGENTS`` in its LiveAvatar module).
FULL_VOICE_AGENT = "5f1e0b4a-3c2d-4e6f-8a9b-0c1d2e3f4a5b"
KEEP_ALIVE, STOP = "POST /v1/sessions/keep-alive", "POST /v1/sessions/stop"
SESSIONS = 6


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(EmulatorConfig()) as handle:
        handle.set_limit("liveavatar", "off")
        # One keep-alive and one stop per caller a minute: a batch that sent them all with the
        # API key would be refused from the second session on.
        handle.set_limit("liveavatar", "1/60s", route=KEEP_ALIVE)
        handle.set_limit("liveavatar", "1/60s", route=STOP)
        yield handle


def credentials(url: str) -> LiveAvatarCredentials:
    # No wait for a refused call: a 429 would fail the test rather than be waited out.
    return LiveAvatarCredentials(
        api_key=SecretStr(API_KEY), base_url=url, max_retry_wait_seconds=0.5
    )


async def test_concurrent_sessions_each_spend_their_own_budget(emulator: EmulatorHandle):
    async with credentials(emulator.url).get_client() as client:

        async def one() -> None:
            async with client.session(FULL) as session:
                await session.keep_alive()

        await asyncio.gather(*(one() for _ in range(SESSIONS)))
    assert emulator.count("requests", route=KEEP_ALIVE) == SESSIONS
    assert emulator.count("requests", route=STOP) == SESSIONS
    assert emulator.count("rate_limited") == 0
    # None of them was counted against the API key.
    assert emulator.count("requests", route=KEEP_ALIVE, key=API_KEY) == 0
    assert emulator.count("requests", route=STOP, key=API_KEY) == 0


async def test_a_session_whose_token_is_gone_is_stopped_with_the_api_key(emulator):
    async with credentials(emulator.url).get_client() as client:
        token = await client.create_session_token(FULL)
        await client.start_session(token)
        gone = token.model_copy(update={"session_token": SecretStr("expired.jwt.token")})
        await client.stop_session(token.session_id, "USER_CLOSED", session_token=gone)
        entry = await client.get_session(token.session_id)
    assert entry.end_reason == "USER_CLOSED"
    assert emulator.count("requests", route=STOP, key=API_KEY) == 1
    with pytest.raises(ValueError, match="give the session_id or the session_token"):
        await client.keep_alive()


async def test_the_demo_apps_teardown_closes_the_tokens_session(emulator: EmulatorHandle):
    async with credentials(emulator.url).get_client() as client:
        token = await client.create_session_token(FULL)
        await client.start_session(token)
        await client.close_session(token)
        await client.close_session(token)  # again: already stopped, still fine
        entry = await client.get_session(token.session_id)
    assert entry.end_reason == "USER_CLOSED"
    assert entry.end_at is not None


async def test_a_connector_session_has_a_room_and_no_websocket(emulator: EmulatorHandle):
    cartesia = LiteSessionConfig(
        avatar_id=SANDBOX_AVATAR_ID,
        is_sandbox=True,
        cartesia_agent_config=CartesiaAgentConfig(secret_id=uuid4(), agent_id="agent_line_1"),
    )
    plain = LiteSessionConfig(avatar_id=SANDBOX_AVATAR_ID, is_sandbox=True)
    assert cartesia.connector
    assert not plain.connector
    async with (
        credentials(emulator.url).get_client() as client,
        client.session(cartesia) as connected,
        client.session(plain) as lite,
    ):
        assert connected.started is not None
        assert connected.started.ws_url is None  # the hosted agent converses, no socket
        assert connected.started.livekit_url
        assert lite.started is not None
        assert lite.started.ws_url is not None


async def test_the_emulators_lite_socket_echoes_the_speak_event_id(emulator: EmulatorHandle):
    plain = LiteSessionConfig(avatar_id=SANDBOX_AVATAR_ID, is_sandbox=True)
    silence = b"\x00\x00" * 24_000  # one second of PCM 16-bit 24 kHz
    async with (
        credentials(emulator.url).get_client() as client,
        client.session(plain) as session,
        session.lite() as socket,
    ):
        with anyio.fail_after(10):
            event_id = await socket.speak(silence, event_id="speak-42")
            started = await socket.wait_for("agent.speak_started")
            ended = await socket.wait_for("agent.speak_ended")
    assert event_id == "speak-42"
    assert started.event_id == ended.event_id == "speak-42"


def test_a_full_session_has_exactly_one_persona() -> None:
    stored = VoiceAgentRef(id=uuid4(), dynamic_variables={"name": "Ada"})
    config = FullSessionConfig(avatar_id=SANDBOX_AVATAR_ID, voice_agent=stored)
    assert config.to_body()["voice_agent"] == {
        "id": str(stored.id),
        "dynamic_variables": {"name": "Ada"},
    }
    assert "avatar_persona" not in config.to_body()
    for personas in ({}, {"voice_agent": stored, "avatar_persona": AvatarPersona()}):
        with pytest.raises(ValueError, match=r"give avatar_persona .* or voice_agent"):
            FullSessionConfig(avatar_id=SANDBOX_AVATAR_ID, **personas)
    with pytest.raises(ValueError, match="at most 50 entries"):
        VoiceAgentRef(id=uuid4(), dynamic_variables={str(i): "x" for i in range(51)})


async def test_a_suite_conversation_runs_on_a_stored_voice_agent(emulator: EmulatorHandle):
    settings = ConnectionSettings(
        base_url=emulator.url,
        api_key=SecretStr(API_KEY),
        fields={"voice_agent_id": FULL_VOICE_AGENT},
    )
    async with LiveAvatarAdapter(settings) as adapter:
        handle = await adapter.start("stored-agent", {})
        reply = await adapter.turn(handle, Turn(kind="launch"))
        await adapter.end(handle)
    assert reply.messages  # the avatar's greeting
    (session,) = emulator.state.liveavatar.sessions.values()
    assert session.mode == "FULL"
    assert session.end_reason == "USER_CLOSED"
