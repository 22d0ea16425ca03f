"""Voiceflow tasks in sync and async flows on a real Prefect server (HTTP shapes mocked)."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.context import get_run_context
from prefect.logging.handlers import APILogHandler

from prefect_sessions.voiceflow import (
    EventAction,
    LaunchAction,
    VoiceflowCredentials,
    adelete_state,
    aemit_session_event,
    aget_state,
    ainteract,
    astart_session,
    aupdate_variables,
    delete_state,
    emit_session_event,
    get_state,
    interact,
    start_session,
    update_variables,
)
from tests.conftest import not_loopback

pytestmark = [
    pytest.mark.usefixtures("prefect_server"),
    pytest.mark.httpx_mock(should_mock=not_loopback),
]

BASE = "https://vf.example.test"
API_KEY = "VF.DM.canary000000000000000000.api-key-canary"
SESSION_KEY = "session-key-canary-7f3a"
STATE = {"stack": [], "storage": {}, "variables": {"name": "Ada", "plan": "gold"}}


def mock_voiceflow(httpx_mock) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/v4/project/proj/environment/main/session", json={"sessionKey": SESSION_KEY}
    )
    httpx_mock.add_response(
        url=f"{BASE}/v4/interact",
        json={
            "traces": [{"type": "text", "payload": {"message": "Welcome, Ada"}}, {"type": "end"}]
        },
    )
    httpx_mock.add_response(method="PATCH", url=f"{BASE}/state/user/ada/variables", json=STATE)
    httpx_mock.add_response(method="GET", url=f"{BASE}/state/user/ada", json=STATE)
    httpx_mock.add_response(method="DELETE", url=f"{BASE}/state/user/ada")
    httpx_mock.add_response(url=f"{BASE}/v2/project/proj/session/call-1/event", status_code=201)


def credentials() -> VoiceflowCredentials:
    return VoiceflowCredentials(api_key=API_KEY, project_id="proj", base_url=BASE)


async def flow_logs(flow_run_id) -> str:
    await APILogHandler.aflush()  # logs ship in batches; wait for them to land
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return "\n".join(log.message for log in logs)


def assert_no_secrets(text: str) -> None:
    assert API_KEY not in text
    assert SESSION_KEY not in text


async def test_the_tasks_run_in_a_sync_flow(httpx_mock):
    mock_voiceflow(httpx_mock)

    @flow
    def sync_conversation():
        creds = credentials()
        session = start_session(creds, "ada")
        turn = interact(creds, session, LaunchAction())
        update_variables(creds, "ada", {"plan": "gold"})
        state = get_state(creds, "ada")
        emit_session_event(creds, "call-1", EventAction.named("hung_up"))
        delete_state(creds, "ada")
        return get_run_context().flow_run.id, turn.messages, state.variables

    run_id, messages, variables = sync_conversation()
    assert messages == ["Welcome, Ada"]
    assert variables == {"name": "Ada", "plan": "gold"}
    logs = await flow_logs(run_id)
    assert "Voiceflow turn for user 'ada': 2 traces (text, end)" in logs
    # An emitted event is accepted whatever the session: the log never claims it was delivered.
    assert "takes effect only if that session has an open realtime connection" in logs
    assert_no_secrets(logs)


async def test_the_tasks_run_in_an_async_flow(httpx_mock):
    mock_voiceflow(httpx_mock)

    @flow
    async def async_conversation():
        creds = credentials()
        session = await astart_session(creds, "ada")
        turn = await ainteract(creds, session, "hello")
        await aupdate_variables(creds, "ada", {"plan": "gold"})
        state = await aget_state(creds, "ada")
        await aemit_session_event(creds, "call-1", "hello")
        await adelete_state(creds, "ada")
        return get_run_context().flow_run.id, turn.ended, state.variables["plan"]

    run_id, ended, plan = await async_conversation()
    assert (ended, plan) == (True, "gold")
    logs = await flow_logs(run_id)
    assert "Updated 1 Voiceflow variables of user 'ada': plan" in logs
    assert_no_secrets(logs)
    sent = httpx_mock.get_requests()
    assert [r.url.path for r in sent][:2] == [
        "/v4/project/proj/environment/main/session",
        "/v4/interact",
    ]
    assert sent[1].headers["authorization"] == SESSION_KEY
