"""End to end: Prefect flows on a real Prefect server drive the emulator's LiveAvatar API over real
HTTP and its LITE websocket on 127.0.0.1. A flow mints a token, starts a session, keeps it alive,
exchanges LITE events, reads the transcript and stops it; no path leaves a session open; no token
reaches Prefect's logs or stored states."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr

from prefect_sessions.emulator import EmulatorHandle, run_emulator
from prefect_sessions.errors import OutcomeUnknownError
from prefect_sessions.liveavatar import (
    AgentStateUpdated,
    AvatarPersona,
    FullSessionConfig,
    LiteSessionConfig,
    LiteSocket,
    LiveAvatarCredentials,
    acreate_session_token,
    aget_session,
    aget_transcript,
    akeep_alive,
    alist_sessions,
    astart_session,
    astop_session,
    create_session_token,
    get_session,
    get_transcript,
    keep_alive,
    list_sessions,
    start_session,
    stop_session,
)
from tests.support.liveavatar_fixtures import API_KEY, AVATAR_ID

pytestmark = pytest.mark.usefixtures("prefect_server")

LITE = LiteSessionConfig(avatar_id=AVATAR_ID, is_sandbox=True, max_session_duration=120)
FULL = FullSessionConfig(avatar_id=AVATAR_ID, avatar_persona=AvatarPersona(), is_sandbox=True)
AUDIO = b"\x01\x00" * 36_000  # 1.5 s of 16-bit PCM at 24 kHz


@pytest.fixture(scope="module")
def emulator_for_liveavatar() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


@pytest.fixture
def emulator(emulator_for_liveavatar: EmulatorHandle) -> EmulatorHandle:
    emulator_for_liveavatar.reset()
    return emulator_for_liveavatar


@pytest.fixture
def credentials(emulator: EmulatorHandle) -> LiveAvatarCredentials:
    return LiveAvatarCredentials(api_key=SecretStr(API_KEY), base_url=emulator.url)


class TestLiveAvatarCredentialsBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[LiveAvatarCredentials]:
        return LiveAvatarCredentials


async def _task_runs_of(flow_run_id: Any, expected: int) -> list[Any]:
    """The flow run's task runs, once ``expected`` of them are recorded in a final state
    (bounded: 30 s).

    Prefect 3 sends task-run states as events that the server records asynchronously, so right
    after a flow returns some may not be readable yet, or still read Running; there is nothing to
    await but their arrival.
    """
    deadline = time.monotonic() + 30
    async with get_client() as prefect:
        while True:
            runs = await prefect.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            final = [run for run in runs if run.state is not None and run.state.is_final()]
            if len(final) >= expected or time.monotonic() > deadline:
                return runs
            await asyncio.sleep(0.2)


async def test_an_async_flow_runs_a_lite_session_from_token_to_stop(
    credentials: LiveAvatarCredentials, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    await credentials.save("liveavatar-e2e", overwrite=True)

    @flow
    async def lite_conversation(block_name: str) -> dict[str, Any]:
        loaded = await LiveAvatarCredentials.load(block_name)
        token = await acreate_session_token(loaded, LITE)
        started = await astart_session(loaded, token)
        try:
            await akeep_alive(loaded, started.session_id)
            async with LiteSocket.for_session(started) as socket:
                await socket.speak(AUDIO)
                # The emulator gives server events their own event_id rather than echoing the
                # command's (the docs say it is echoed), so match on the type only here.
                with anyio.fail_after(10):
                    await socket.wait_for("agent.speak_ended")
                    await socket.start_listening()
                    listening = await socket.wait_for(
                        lambda e: isinstance(e, AgentStateUpdated) and e.state == "listening"
                    )
                    await socket.keep_alive()
                    await socket.interrupt()
            transcript = await aget_transcript(loaded, started.session_id)
            active = await alist_sessions(loaded, "active")
        finally:
            await astop_session(loaded, started.session_id, "USER_CLOSED")
        after = await aget_session(loaded, started.session_id)
        historic = await alist_sessions(loaded, "historic")
        return {
            "session_id": started.session_id,
            "listening": listening.type,
            "active": [entry.id for entry in active],
            "transcript_active": transcript.session_active,
            "end_reason": after.end_reason,
            "historic": [entry.id for entry in historic],
        }

    state = await lite_conversation("liveavatar-e2e", return_state=True)
    result = await state.result()

    session_id = result["session_id"]
    assert result["listening"] == "agent.state_updated"
    assert result["active"] == [session_id]
    assert result["transcript_active"] is True
    assert result["end_reason"] == "USER_CLOSED"
    assert result["historic"] == [session_id]

    # No token or key in the logs, nor in any task run the Prefect server holds.
    assert "eyJ" not in caplog.text  # the emulator's tokens are JWTs
    assert API_KEY not in caplog.text
    assert f"Started LiveAvatar session {session_id}" in caplog.text
    task_runs = await _task_runs_of(state.state_details.flow_run_id, expected=8)
    assert len(task_runs) == 8
    for task_run in task_runs:
        assert "eyJ" not in task_run.model_dump_json()
        assert task_run.state is not None
        assert task_run.state.is_completed()


def test_a_sync_flow_reads_a_full_sessions_transcript(credentials: LiveAvatarCredentials):
    @flow
    def full_session(block: LiveAvatarCredentials) -> tuple[list[str], int, str | None, bool]:
        token = create_session_token(block, FULL)
        started = start_session(block, token)
        keep_alive(block, started.session_id)
        transcript = get_transcript(block, started.session_id)
        active = list_sessions(block, "active")
        stop_session(block, started.session_id, "AGENT_HANG_UP")
        ended = get_session(block, started.session_id)
        after = get_transcript(block, started.session_id)
        return (
            [e.role for e in transcript.entries],
            len(active),
            ended.end_reason,
            after.session_active,
        )

    roles, active, reason, still_active = full_session(credentials)
    assert roles == ["avatar"]  # the emulator's agent greets on start
    assert active == 1
    assert reason == "AGENT_HANG_UP"
    assert still_active is False


async def test_a_failing_flow_stops_its_session(credentials: LiveAvatarCredentials):
    @flow
    async def broken() -> None:
        async with credentials.get_client() as client, client.session(LITE):
            raise ValueError("the agent answered nonsense")

    state = await broken(return_state=True)
    assert state.is_failed()
    async with credentials.get_client() as client:
        (ended,) = await client.list_sessions("historic")
        assert await client.list_sessions("active") == []
    assert ended.end_reason == "SERVER_ERROR"


async def test_a_task_that_times_out_stops_its_session(credentials: LiveAvatarCredentials):
    @task(timeout_seconds=0.5)
    async def hangs() -> None:
        async with credentials.get_client() as client, client.session(LITE) as session:
            await session.keep_alive()
            await anyio.sleep_forever()

    @flow
    async def with_timeout() -> None:
        await hangs()

    state = await with_timeout(return_state=True)
    assert state.is_failed()
    async with credentials.get_client() as client:
        (ended,) = await client.list_sessions("historic")
    assert ended.end_reason == "USER_DISCONNECTED"


@pytest.mark.parametrize(
    ("fault", "error"),
    # An unreadable answer to a start (not idempotent) is an unknown outcome, as for every
    # provider: the engine decides from the request's idempotency.
    [("cut", OutcomeUnknownError), ("malformed", OutcomeUnknownError)],
)
async def test_a_start_whose_answer_is_lost_still_ends_stopped(
    credentials: LiveAvatarCredentials, emulator: EmulatorHandle, fault: str, error: type
):
    # The emulator starts the session, then breaks the answer: the session is open although
    # the client never learnt its LiveKit details. Only a stop by ID can close it.
    emulator.queue_fault(fault, route="/v1/sessions/start")
    async with credentials.get_client() as client:
        with pytest.raises(error, match="start session"):
            async with client.session(LITE):
                pytest.fail("the block must not run when start failed")
        (ended,) = await client.list_sessions("historic")
        assert await client.list_sessions("active") == []
    assert ended.end_reason == "SERVER_ERROR"
    assert emulator.count(route="POST /v1/sessions/start") == 1  # never sent twice
