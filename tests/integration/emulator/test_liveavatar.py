"""The emulator's LiveAvatar API over real HTTP: tokens, sessions, lists, 422s, LITE websocket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
import websockets

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, create_app, run_emulator
from prefect_sessions.emulator.providers.liveavatar import SANDBOX_AVATAR_ID

API_KEY = "la-test-key"


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, headers={"X-API-KEY": API_KEY}) as http:
        yield http


def token(client: httpx.Client, **body: Any) -> dict[str, str]:
    payload = {"mode": "LITE", "avatar_id": SANDBOX_AVATAR_ID, "is_sandbox": True, **body}
    response = client.post("/v1/sessions/token", json=payload)
    assert response.status_code == 200, response.text
    assert response.json()["code"] == 1000
    data: dict[str, str] = response.json()["data"]
    return data


def start(client: httpx.Client, session_token: str) -> httpx.Response:
    return client.post(
        "/v1/sessions/start", headers={"authorization": f"Bearer {session_token}", "X-API-KEY": ""}
    )


def test_token_start_stop_and_history(client: httpx.Client) -> None:
    minted = token(client)
    started = start(client, minted["session_token"])
    assert started.status_code == 201
    data = started.json()["data"]
    assert data["session_id"] == minted["session_id"]
    assert data["livekit_url"]
    assert data["livekit_client_token"]
    assert data["ws_url"].startswith("ws://127.0.0.1:")

    active = client.get("/v1/sessions", params={"type": "active"}).json()["data"]
    assert [s["id"] for s in active["results"]] == [minted["session_id"]]

    stopped = client.post(
        "/v1/sessions/stop", json={"session_id": minted["session_id"], "reason": "USER_CLOSED"}
    )
    assert stopped.json()["code"] == 1000
    historic = client.get("/v1/sessions", params={"type": "historic"}).json()["data"]
    assert historic["results"][0]["end_reason"] == "USER_CLOSED"
    assert client.get("/v1/sessions", params={"type": "active"}).json()["data"]["count"] == 0


def test_full_mode_needs_a_persona_and_gets_fastapis_422(client: httpx.Client) -> None:
    response = client.post("/v1/sessions/token", json={"mode": "FULL", "avatar_id": "not-a-uuid"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    locations = [tuple(item["loc"]) for item in detail]
    assert ("body", "FullSDKSessionTokenConfigDataSchema", "avatar_id") in locations
    valid_id = {"mode": "FULL", "avatar_id": SANDBOX_AVATAR_ID}
    missing = client.post("/v1/sessions/token", json=valid_id)
    assert missing.status_code == 422
    assert "exactly one of avatar_persona or voice_agent" in missing.text


FULL_AGENT, ELEVENLABS_AGENT = (
    "5f1e0b4a-3c2d-4e6f-8a9b-0c1d2e3f4a5b",
    "7a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
)


def test_full_mode_takes_a_stored_voice_agent_instead_of_a_persona(client: httpx.Client) -> None:
    minted = token(client, mode="FULL", voice_agent={"id": FULL_AGENT, "language": "en"})
    data = start(client, minted["session_token"]).json()["data"]
    assert "ws_url" not in data
    transcript = client.get(f"/v1/sessions/{minted['session_id']}/transcript").json()["data"]
    assert transcript["transcript_data"][0]["role"] == "avatar"

    both = {"avatar_persona": {"language": "en"}, "voice_agent": {"id": FULL_AGENT}}
    refused = client.post(
        "/v1/sessions/token", json={"mode": "FULL", "avatar_id": SANDBOX_AVATAR_ID, **both}
    )
    assert refused.status_code == 422
    assert "exactly one of avatar_persona or voice_agent" in refused.text

    unknown = {"mode": "FULL", "avatar_id": SANDBOX_AVATAR_ID, "voice_agent": {"id": str(uuid4())}}
    missing = client.post("/v1/sessions/token", json=unknown)
    assert missing.status_code == 404
    assert "Voice agent" in missing.json()["message"]


def test_an_elevenlabs_voice_agent_runs_lite_even_from_a_full_token(client: httpx.Client) -> None:
    minted = token(client, mode="FULL", voice_agent={"id": ELEVENLABS_AGENT})
    data = start(client, minted["session_token"]).json()["data"]
    assert "ws_url" not in data  # a connector: the hosted agent converses, no socket
    session = client.get(f"/v1/sessions/{minted['session_id']}").json()["data"]
    assert session["mode"] == "LITE"


def test_full_mode_records_the_avatars_greeting_in_the_transcript(client: httpx.Client) -> None:
    minted = token(client, mode="FULL", avatar_persona={"language": "en"})
    data = start(client, minted["session_token"]).json()["data"]
    assert "ws_url" not in data
    transcript = client.get(f"/v1/sessions/{minted['session_id']}/transcript").json()["data"]
    assert transcript["session_active"] is True
    assert transcript["transcript_data"][0]["role"] == "avatar"
    assert "Welcome" in transcript["transcript_data"][0]["transcript"]


def test_sandbox_sessions_only_take_the_sandbox_avatar(client: httpx.Client) -> None:
    response = client.post(
        "/v1/sessions/token",
        json={
            "mode": "LITE",
            "avatar_id": "00000000-0000-0000-0000-000000000001",
            "is_sandbox": True,
        },
    )
    assert response.status_code == 400
    assert set(response.json()) == {"code", "data", "message"}


def test_auth_api_key_for_tokens_bearer_for_start(
    emulator: EmulatorHandle, client: httpx.Client
) -> None:
    no_key = httpx.post(f"{emulator.url}/v1/sessions/token", json={"avatar_id": SANDBOX_AVATAR_ID})
    assert no_key.status_code == 401
    with_api_key = client.post("/v1/sessions/start")
    assert with_api_key.status_code == 401
    minted = token(client)
    assert start(client, minted["session_token"]).status_code == 201
    assert start(client, minted["session_token"]).status_code == 400  # a token starts once


def test_keep_alive_and_stop_accept_the_session_token(client: httpx.Client) -> None:
    minted = token(client)
    start(client, minted["session_token"])
    bearer = {"authorization": f"Bearer {minted['session_token']}", "X-API-KEY": ""}
    assert client.post("/v1/sessions/keep-alive", headers=bearer).json()["code"] == 1000
    assert client.post("/v1/sessions/stop", headers=bearer).json()["code"] == 1000
    assert client.post("/v1/sessions/keep-alive", headers=bearer).status_code == 400


def test_unknown_session_is_404(client: httpx.Client) -> None:
    response = client.get("/v1/sessions/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["code"] == 404


def test_avatars_list_the_sandbox_avatar(client: httpx.Client) -> None:
    public = client.get("/v1/avatars/public").json()["data"]["results"]
    assert [a["id"] for a in public] == [SANDBOX_AVATAR_ID]
    assert client.get(f"/v1/avatars/{SANDBOX_AVATAR_ID}").json()["data"]["name"] == "Wayne"


async def test_sandbox_sessions_end_after_a_minute() -> None:
    now = [1_000_000.0]
    app = create_app(EmulatorConfig(limits={"liveavatar": None}), clock=lambda: now[0])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://emulator", headers={"X-API-KEY": API_KEY}
    ) as http:
        body = {"mode": "LITE", "avatar_id": SANDBOX_AVATAR_ID, "is_sandbox": True}
        minted = (await http.post("/v1/sessions/token", json=body)).json()["data"]
        bearer = {"authorization": f"Bearer {minted['session_token']}"}
        await http.post("/v1/sessions/start", headers=bearer)
        now[0] += 61
        entry = (await http.get(f"/v1/sessions/{minted['session_id']}")).json()["data"]

    assert entry["end_reason"] == "MAX_DURATION_REACHED"
    assert entry["duration"] == 60


def test_one_second_window_per_caller_and_endpoint(
    emulator: EmulatorHandle, client: httpx.Client
) -> None:
    # With the inferred X-RateLimit-* published too (the default publishes Retry-After and
    # X-RateLimit-Reset only, tests/integration/emulator/test_limits.py).
    emulator.set_limit("liveavatar", "2/60s publish=headers")
    for _ in range(2):
        assert client.get("/v1/sessions", params={"type": "active"}).status_code == 200
    refused = client.get("/v1/sessions", params={"type": "historic"})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    # Another endpoint of the same key has its own window.
    assert client.get("/v1/avatars/public").status_code == 200


async def test_lite_websocket_speaks_and_reports_states(client: httpx.Client) -> None:
    minted = token(client)
    ws_url = start(client, minted["session_token"]).json()["data"]["ws_url"]

    async with websockets.connect(ws_url) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "session.state_updated"
        assert hello["state"] == "connected"

        await ws.send(json.dumps({"type": "agent.speak", "audio": "AAAAAA=="}))
        started = [json.loads(await ws.recv()) for _ in range(3)]
        assert [e["type"] for e in started] == [
            "agent.speak_started",
            "agent.state_updated",
            "agent.audio_buffer_appended",
        ]
        assert started[1]["state"] == "talking"

        await ws.send(json.dumps({"type": "agent.speak_end", "event_id": "e-1"}))
        ended = [json.loads(await ws.recv()) for _ in range(3)]
        assert ended[1]["type"] == "agent.speak_ended"
        assert ended[1]["task"]["id"] == started[0]["task"]["id"]
        assert ended[2]["state"] == "idle"

        await ws.send("not json")
        assert json.loads(await ws.recv())["type"] == "error"


async def test_lite_websocket_refuses_a_wrong_token(client: httpx.Client) -> None:
    minted = token(client)
    ws_url = start(client, minted["session_token"]).json()["data"]["ws_url"]
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(ws_url.split("?")[0] + "?token=wrong"):
            pass


def test_run_emulator_serves_liveavatar_with_a_strict_key_list() -> None:
    with run_emulator(EmulatorConfig(api_keys=frozenset({API_KEY}))) as emulator:
        wrong = httpx.get(f"{emulator.url}/v1/avatars", headers={"X-API-KEY": "other"})
        right = httpx.get(f"{emulator.url}/v1/avatars", headers={"X-API-KEY": API_KEY})
    assert wrong.status_code == 401
    assert right.status_code == 200
