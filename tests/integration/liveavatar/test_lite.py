"""The LITE websocket against a real local websocket server: wait for ``connected``, speak in
packets within the documented limit, interrupt, listen, keep alive, and receive every event."""

from __future__ import annotations

import base64

import anyio
import pytest

from prefect_sessions.errors import AuthenticationError, ConfigurationError, ProviderError
from prefect_sessions.liveavatar import (
    DEFAULT_CHUNK_BYTES,
    MAX_PACKET_BYTES,
    AgentSpeakEnded,
    AgentSpeakStarted,
    AgentStateUpdated,
    LiteEvent,
    LiteSessionConfig,
    LiteSocket,
    LiveAvatarCredentials,
    SessionStateUpdated,
)
from prefect_sessions.liveavatar.lite import _max_chunk_bytes
from tests.support.liveavatar_app import LiveAvatarServer
from tests.support.liveavatar_fixtures import (  # noqa: F401  (fixtures)
    AVATAR_ID,
    la_credentials_fixture,
    la_server_fixture,
    la_url_fixture,
)

LITE = LiteSessionConfig(avatar_id=AVATAR_ID, is_sandbox=True)


def pcm(seconds: float) -> bytes:
    """A ramp of 16-bit samples at 24 kHz, distinct enough to detect reordering."""
    samples = int(24_000 * seconds)
    return b"".join((i % 65_536).to_bytes(2, "little") for i in range(samples))


async def test_a_lite_exchange_speaks_in_limited_packets_and_yields_every_event(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    la_server.ws_preamble.append({"type": "warning", "warning": "slow network"})
    audio = pcm(2.5)
    async with (
        la_credentials.get_client() as client,
        client.session(LITE) as session,
        session.lite() as socket,
    ):
        assert socket.state == "connected"
        event_id = await socket.speak(audio)
        ended = await socket.wait_for("agent.speak_ended", event_id=event_id)
        listening = await socket.start_listening()
        await socket.stop_listening()
        keep = await socket.keep_alive()
        await socket.interrupt()
        received = []
        with anyio.fail_after(10):
            async for event in socket.events():
                received.append(event)
                if event.type == "agent.speak_interrupted":
                    break

    # Nothing the server sent was lost: the queue kept what wait_for skipped, in order.
    kinds = [event.type for event in received]
    assert kinds == [
        "session.state_updated",
        "warning",
        "session.state_updated",
        "agent.speak_started",
        "agent.state_updated",
        "agent.state_updated",
        "session.keep_alive_ack",
        "agent.speak_interrupted",
    ]
    assert isinstance(received[0], SessionStateUpdated)
    assert received[0].state == "connecting"
    assert isinstance(received[3], AgentSpeakStarted)
    assert received[3].event_id == event_id
    assert isinstance(ended, AgentSpeakEnded)
    assert ended.task == {"id": f"task-{event_id}"}
    state = received[4]
    assert isinstance(state, AgentStateUpdated)
    assert state.event_id == listening
    assert state.new_state == "listening"
    unknown = received[6]
    assert type(unknown) is LiteEvent
    assert unknown.fields["extra"] == [1, 2]
    assert unknown.event_id == keep

    frames = la_server.ws_frames
    speaks = [f for f in frames if f["type"] == "agent.speak"]
    assert [len(base64.b64decode(f["audio"])) for f in speaks] == [48_000, 48_000, 24_000]
    assert b"".join(base64.b64decode(f["audio"]) for f in speaks) == audio
    assert {f["event_id"] for f in speaks} == {event_id}
    assert all(f["_bytes"] <= MAX_PACKET_BYTES for f in frames)
    assert [f["type"] for f in frames[len(speaks) :]] == [
        "agent.speak_end",
        "agent.start_listening",
        "agent.stop_listening",
        "session.keep_alive",
        "agent.interrupt",
    ]
    assert frames[len(speaks)]["event_id"] == event_id
    assert frames[-1] == {"type": "agent.interrupt", "_bytes": len('{"type":"agent.interrupt"}')}
    assert la_server.stops() == [(session.session_id, "USER_CLOSED")]


async def test_the_largest_chunk_still_fits_one_packet(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    largest = _max_chunk_bytes()
    audio = pcm(largest / 48_000 + 0.5)
    async with (
        la_credentials.get_client() as client,
        client.session(LITE) as session,
        session.lite(chunk_bytes=largest) as socket,
    ):
        event_id = await socket.speak(audio)
        await socket.wait_for(lambda e: isinstance(e, AgentSpeakEnded), event_id=event_id)
    sizes = [f["_bytes"] for f in la_server.ws_frames if f["type"] == "agent.speak"]
    assert len(sizes) == 2
    assert MAX_PACKET_BYTES - 300 < sizes[0] <= MAX_PACKET_BYTES


async def test_streaming_audio_under_one_event_id_ends_once(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    async with (
        la_credentials.get_client() as client,
        client.session(LITE) as session,
        session.lite() as socket,
    ):
        event_id = await socket.speak(pcm(0.5), end=False)
        await socket.speak(pcm(0.5), event_id=event_id, end=False)
        await socket.speak_end(event_id)
        await socket.wait_for("agent.speak_ended", event_id=event_id)
    kinds = [(f["type"], f["event_id"]) for f in la_server.ws_frames]
    assert kinds == [("agent.speak", event_id)] * 2 + [("agent.speak_end", event_id)]
    assert la_server.sessions[session.session_id].transcript[0]["transcript"] == (
        f"[{2 * 24_000} bytes of audio]"
    )


@pytest.mark.parametrize("state", ["closed", "closing"])
async def test_a_session_that_closes_before_connected_is_an_error(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer, state: str
):
    la_server.ws_connected_state = state
    async with la_credentials.get_client() as client, client.session(LITE) as session:
        with pytest.raises(ProviderError, match=f"state '{state}' before 'connected'"):
            async with session.lite():
                pytest.fail("no command may be sent before 'connected'")
    assert la_server.ws_frames == []


async def test_a_refused_websocket_is_a_typed_error_without_the_url(
    la_credentials: LiveAvatarCredentials,
):
    async with la_credentials.get_client() as client, client.session(LITE) as session:
        assert session.started is not None
        assert session.started.ws_url
        forged = session.started.ws_url.split("?token=")[0] + "?token=CANARY-forged"
        with pytest.raises(ProviderError) as caught:
            async with LiteSocket(forged):
                pass
    assert "connect LITE websocket" in str(caught.value)
    assert "CANARY" not in str(caught.value)
    # Closing before the handshake completes makes the server answer HTTP 403.
    assert isinstance(caught.value, AuthenticationError)
    assert caught.value.status_code == 403


async def test_the_socket_reports_a_normal_close_as_the_end_of_events(
    la_credentials: LiveAvatarCredentials,
):
    async with (
        la_credentials.get_client() as client,
        client.session(LITE) as session,
        session.lite() as socket,
    ):
        await socket._send({"type": "test.close"})
        kinds = [event.type async for event in socket.events()]
        with pytest.raises(ProviderError, match="closed"):
            await socket.keep_alive()
    assert kinds == ["session.state_updated", "session.state_updated"]


def test_bad_audio_and_settings_fail_before_sending():
    with pytest.raises(ConfigurationError, match="wss://"):
        LiteSocket("https://api.liveavatar.com/ws")
    with pytest.raises(ConfigurationError, match="even number"):
        LiteSocket("wss://x", chunk_bytes=DEFAULT_CHUNK_BYTES + 1)
    with pytest.raises(ConfigurationError, match="1 MB"):
        LiteSocket("wss://x", chunk_bytes=_max_chunk_bytes() + 2)
    with pytest.raises(ConfigurationError, match="only LITE sessions"):
        LiteSocket.for_session("")
    assert "CANARY" not in repr(LiteSocket("wss://x?token=CANARY"))


@pytest.mark.parametrize("audio", [b"", b"\x00\x01\x02"])
async def test_audio_must_be_whole_16_bit_samples(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer, audio: bytes
):
    async with (
        la_credentials.get_client() as client,
        client.session(LITE) as session,
        session.lite() as socket,
    ):
        with pytest.raises(ConfigurationError, match="16-bit PCM"):
            await socket.speak(audio)
    assert la_server.ws_frames == []
