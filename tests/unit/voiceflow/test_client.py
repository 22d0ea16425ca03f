"""Voiceflow client: the requests it sends and how it reads answers (pytest-httpx)."""

from __future__ import annotations

import json
import pickle

import pytest
from pydantic import SecretStr

from prefect_sessions.errors import ConfigurationError, OutcomeUnknownError
from prefect_sessions.voiceflow import (
    ButtonNotFoundError,
    ChoiceTrace,
    DTMFAction,
    EndAction,
    EventAction,
    FileAction,
    LaunchAction,
    LiveAgentHandoffAction,
    MessageAction,
    SessionKeyRejectedError,
    State,
    TextAction,
    TextTrace,
    Trace,
    TurnConfig,
    VoiceflowCredentials,
    VoiceflowSession,
)

API_KEY = "VF.DM.000000000000000000000000.canary-api-key"
BASE = "https://vf.example.test"


@pytest.fixture
def credentials() -> VoiceflowCredentials:
    return VoiceflowCredentials(api_key=API_KEY, project_id="proj-1", base_url=BASE)


def body(request) -> dict:
    return json.loads(request.content)


async def test_start_session_targets_the_environment_with_the_api_key(httpx_mock, credentials):
    httpx_mock.add_response(
        method="POST",
        url=f"{BASE}/v4/project/proj-1/environment/main/session",
        json={"sessionKey": "sk-1"},
    )
    async with credentials.get_client() as client:
        session = await client.start_session("ada")
    request = httpx_mock.get_request()
    assert request.headers["authorization"] == API_KEY
    assert body(request) == {"userID": "ada"}
    assert session.session_key.get_secret_value() == "sk-1"
    assert session.environment == "main"
    assert "sk-1" not in repr(session)


async def test_start_session_uses_the_traffic_split_route_without_an_environment(
    httpx_mock, credentials
):
    httpx_mock.add_response(url=f"{BASE}/v4/project/proj-1/session", json={"sessionKey": "sk"})
    creds = credentials.model_copy(update={"environment": None})
    async with creds.get_client() as client:
        session = await client.start_session("ada")
    assert session.environment is None
    httpx_mock.add_response(url=f"{BASE}/v4/project/proj-1/session", json={"sessionKey": "sk2"})
    async with credentials.get_client() as client:
        await client.start_session("bob", traffic_split=True)


@pytest.mark.parametrize("user_id", ["", "x" * 257])
async def test_a_bad_user_id_is_refused_before_any_request(httpx_mock, credentials, user_id):
    async with credentials.get_client() as client:
        with pytest.raises(ConfigurationError, match="user_id must be a string of 1 to 256"):
            await client.start_session(user_id)
    assert httpx_mock.get_requests() == []


async def test_interact_sends_the_session_key_the_action_variables_and_config(
    httpx_mock, credentials
):
    httpx_mock.add_response(
        method="POST",
        url=f"{BASE}/v4/interact",
        json={
            "traces": [
                {"type": "text", "payload": {"message": "Welcome, Ada!"}},
                {
                    "type": "choice",
                    "payload": {
                        "buttons": [
                            {
                                "name": "Refund",
                                "request": {"type": "path-r1", "payload": {"label": "Refund"}},
                            }
                        ]
                    },
                },
                {"type": "mystery-v5", "payload": {"shape": "new"}, "extra": 1},
            ]
        },
    )
    session = VoiceflowSession(user_id="ada", session_key=SecretStr("sk-9"), project_id="proj-1")
    async with credentials.get_client() as client:
        turn = await client.interact(
            session,
            LaunchAction(),
            variables={"name": "Ada"},
            config=TurnConfig(tts=False, exclude_types=["debug"]),
        )
    request = httpx_mock.get_request()
    assert request.headers["authorization"] == "sk-9"
    assert body(request) == {
        "action": {"type": "launch"},
        "variables": {"name": "Ada"},
        "config": {"tts": False, "excludeTypes": ["debug"]},
    }
    assert isinstance(turn.traces[0], TextTrace)
    assert isinstance(turn.traces[1], ChoiceTrace)
    unknown = turn.traces[2]
    assert type(unknown) is Trace
    assert unknown.to_wire() == {"type": "mystery-v5", "payload": {"shape": "new"}, "extra": 1}
    assert turn.messages == ["Welcome, Ada!"]
    assert [b.name for b in turn.buttons] == ["Refund"]
    assert turn.trace_types == ["text", "choice", "mystery-v5"]


async def test_a_refused_superseded_key_says_so(httpx_mock, credentials):
    httpx_mock.add_response(
        url=f"{BASE}/v4/project/proj-1/environment/main/session", json={"sessionKey": "old"}
    )
    httpx_mock.add_response(
        url=f"{BASE}/v4/project/proj-1/environment/main/session", json={"sessionKey": "new"}
    )
    httpx_mock.add_response(
        url=f"{BASE}/v4/interact",
        status_code=401,
        json={"code": 401, "status": "Unauthorized", "data": "Invalid session key"},
    )
    async with credentials.get_client() as client:
        first = await client.start_session("ada")
        await client.start_session("ada")
        with pytest.raises(SessionKeyRejectedError) as caught:
            await client.interact(first, "hello")
    error = caught.value
    assert error.superseded is True
    assert pickle.loads(pickle.dumps(error)).superseded is True
    assert error.status_code == 401
    assert "superseded: a newer session was started for user 'ada'" in str(error)
    assert "old" not in str(error).replace("old one", "")
    assert len(httpx_mock.get_requests()) == 3  # a 401 is never retried


async def test_a_refused_key_of_unknown_history_gives_the_likely_reason(httpx_mock, credentials):
    httpx_mock.add_response(url=f"{BASE}/v4/interact", status_code=401, json={"data": "nope"})
    session = VoiceflowSession(user_id="zed", session_key=SecretStr("sk-x"), project_id="proj-1")
    async with credentials.get_client() as client:
        with pytest.raises(SessionKeyRejectedError, match="may have been superseded") as caught:
            await client.interact(session, "hi")
    assert caught.value.superseded is None


async def test_an_unreadable_answer_to_a_turn_is_outcome_unknown(httpx_mock, credentials):
    httpx_mock.add_response(url=f"{BASE}/v4/interact", text="<html>gateway</html>")
    session = VoiceflowSession(user_id="ada", session_key=SecretStr("sk"), project_id="proj-1")
    async with credentials.get_client() as client:
        with pytest.raises(OutcomeUnknownError, match="invalid JSON"):
            await client.interact(session, "hi")


async def test_state_calls_send_the_project_header_and_read_the_state(httpx_mock, credentials):
    state = {
        "stack": [{"diagramID": "d1", "storage": {}, "variables": {}}],
        "storage": {},
        "variables": {"name": "Ada", "tier": "gold"},
    }
    httpx_mock.add_response(method="GET", url=f"{BASE}/state/user/ada%2F1", json=state)
    httpx_mock.add_response(method="PATCH", url=f"{BASE}/state/user/ada%2F1/variables", json=state)
    httpx_mock.add_response(method="PUT", url=f"{BASE}/state/user/ada%2F1", json=state)
    httpx_mock.add_response(method="DELETE", url=f"{BASE}/state/user/ada%2F1")
    async with credentials.get_client() as client:
        got = await client.get_state("ada/1")
        merged = await client.update_variables("ada/1", {"tier": "gold"})
        await client.update_state("ada/1", State())
        await client.delete_state("ada/1")
    requests = httpx_mock.get_requests()
    assert {r.headers["projectID"] for r in requests} == {"proj-1"}
    assert {r.headers["authorization"] for r in requests} == {API_KEY}
    assert body(requests[1]) == {"tier": "gold"}
    assert body(requests[2]) == {"stack": [], "storage": {}, "variables": {}}
    assert got.variables == {"name": "Ada", "tier": "gold"}
    assert merged.stack[0].diagram_id == "d1"


async def test_get_state_of_a_user_without_state_is_empty(httpx_mock, credentials):
    httpx_mock.add_response(url=f"{BASE}/state/user/nobody", json=None)
    async with credentials.get_client() as client:
        assert await client.get_state("nobody") == State()


async def test_emit_session_event_and_legacy_interact(httpx_mock, credentials):
    httpx_mock.add_response(
        method="POST", url=f"{BASE}/v2/project/proj-1/session/call-7/event", status_code=201
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{BASE}/state/user/ada/interact",
        json=[{"type": "text", "payload": {"message": "Hi"}}],
    )
    async with credentials.get_client() as client:
        await client.emit_session_event("call-7", EventAction.named("payment_received"))
        turn = await client.legacy_interact("ada", TextAction(payload="hello"), variables={"a": 1})
    event, legacy = httpx_mock.get_requests()
    assert body(event) == {
        "action": {"type": "event", "payload": {"event": {"name": "payment_received"}}}
    }
    assert legacy.headers["versionID"] == "main"
    assert body(legacy) == {
        "action": {"type": "text", "payload": "hello"},
        "state": {"variables": {"a": 1}},
    }
    assert turn.messages == ["Hi"]


async def test_conversation_presses_buttons_by_label_and_cleans_up(httpx_mock, credentials):
    httpx_mock.add_response(
        url=f"{BASE}/v4/project/proj-1/environment/main/session", json={"sessionKey": "sk"}
    )
    choice = {
        "type": "choice",
        "payload": {
            "buttons": [
                {
                    "name": "Track order",
                    "request": {"type": "path-t", "payload": {"label": "Track order"}},
                }
            ]
        },
    }
    httpx_mock.add_response(url=f"{BASE}/v4/interact", json={"traces": [choice]})
    httpx_mock.add_response(
        url=f"{BASE}/v4/interact",
        json={
            "traces": [{"type": "text", "payload": {"message": "It ships today."}}, {"type": "end"}]
        },
    )
    httpx_mock.add_response(method="DELETE", url=f"{BASE}/state/user/ada")
    async with credentials.get_client() as client, client.conversation("ada") as chat:
        await chat.launch()
        with pytest.raises(ButtonNotFoundError, match="the agent offered 'Track order'"):
            await chat.choose("Refund")
        turn = await chat.choose("track ORDER")
        assert turn.ended
    pressed = body(httpx_mock.get_requests()[2])
    assert pressed == {"action": {"type": "path-t", "payload": {"label": "Track order"}}}
    assert httpx_mock.get_requests()[-1].method == "DELETE"


def test_credentials_hide_the_key_and_check_the_base_url():
    creds = VoiceflowCredentials(api_key=API_KEY, project_id="p")
    assert creds.base_url == "https://general-runtime.voiceflow.com"
    assert API_KEY not in repr(creds)
    assert API_KEY not in str(creds.model_dump())
    with pytest.raises(ValueError, match="base_url must start with http"):
        VoiceflowCredentials(
            api_key=API_KEY, project_id="p", base_url="general-runtime.voiceflow.com"
        )


@pytest.mark.parametrize(
    ("action", "wire"),
    [
        (EndAction(), {"type": "end"}),
        (
            MessageAction(payload={"message": "hi"}),
            {"type": "message", "payload": {"message": "hi"}},
        ),
        (DTMFAction(payload="12#"), {"type": "dtmf", "payload": "12#"}),
        (
            FileAction(payload={"url": "u"}, time=5),
            {"type": "file", "payload": {"url": "u"}, "time": 5},
        ),
        (LiveAgentHandoffAction(), {"type": "live-agent-handoff"}),
    ],
)
async def test_the_v4_actions_go_out_with_their_type_and_the_payload_as_given(
    httpx_mock, credentials, action, wire
):
    httpx_mock.add_response(url=f"{BASE}/v4/interact", json={"traces": []})
    session = VoiceflowSession(user_id="u", session_key=SecretStr("k"), project_id="proj-1")
    async with credentials.get_client() as client:
        await client.interact(session, action)
    assert body(httpx_mock.get_request())["action"] == wire


def test_the_v4_action_types_are_fixed() -> None:
    with pytest.raises(ValueError, match="literal_error"):
        DTMFAction(type="text")
    with pytest.raises(ValueError, match="none_required"):
        EndAction(payload="bye")
