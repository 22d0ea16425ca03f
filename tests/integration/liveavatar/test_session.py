"""The session helper over real HTTP on 127.0.0.1: every way out of ``async with`` stops the
session, with the end reason that says why; plus paging of real lists and transcripts."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from prefect_sessions.errors import ProviderUnavailableError
from prefect_sessions.liveavatar import (
    AvatarPersona,
    FullSessionConfig,
    LiteSessionConfig,
    LiveAvatarCredentials,
    LiveAvatarResponseError,
)
from tests.support.liveavatar_app import Fault, LiveAvatarServer
from tests.support.liveavatar_fixtures import (  # noqa: F401  (fixtures)
    AVATAR_ID,
    RecordingSleep,
    client_options,
    engine_sleep_fixture,
    la_credentials_fixture,
    la_server_fixture,
    la_url_fixture,
)

LITE = LiteSessionConfig(avatar_id=AVATAR_ID, is_sandbox=True)
FULL = FullSessionConfig(avatar_id=AVATAR_ID, avatar_persona=AvatarPersona(), is_sandbox=True)


async def test_a_clean_exit_stops_the_session_as_user_closed(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    async with la_credentials.get_client() as client:
        async with client.session(FULL) as session:
            await session.keep_alive()
            started = session.started
            assert started is not None
            assert started.ws_url is None
            entry = await client.get_session(session.session_id)
            assert entry.end_at is None
        record = la_server.sessions[session.session_id]
        assert record.keep_alives == 1
        assert la_server.stops() == [(session.session_id, "USER_CLOSED")]
        assert session.stopped_with == "USER_CLOSED"
        ended = await client.get_session(session.session_id)
        assert ended.end_reason == "USER_CLOSED"
        assert ended.end_at is not None


async def test_an_exception_stops_the_session_as_server_error_and_still_propagates(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    async with la_credentials.get_client() as client:
        with pytest.raises(KeyError, match="missing-slot"):
            async with client.session(LITE) as session:
                raise KeyError("missing-slot")
    assert la_server.stops() == [(session.session_id, "SERVER_ERROR")]


async def test_cancelling_the_task_stops_the_session_as_user_disconnected(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    inside = asyncio.Event()
    holder: dict[str, str] = {}

    async def run() -> None:
        async with la_credentials.get_client() as client, client.session(LITE) as session:
            holder["id"] = session.session_id
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(run())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert la_server.stops() == [(holder["id"], "USER_DISCONNECTED")]


async def test_the_stop_survives_a_cancel_scope_that_cancels_every_await(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    # Prefect's task timeouts are anyio cancel scopes: cancellation stays active for every await
    # inside the scope, so an unshielded stop would itself be cancelled.
    async with la_credentials.get_client() as client:
        with anyio.CancelScope() as scope:
            async with client.session(LITE) as session:
                scope.cancel()
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        assert la_server.stops() == [(session.session_id, "USER_DISCONNECTED")]
        assert (await client.get_session(session.session_id)).end_reason == "USER_DISCONNECTED"


async def test_an_explicit_stop_chooses_the_reason_and_exit_does_not_stop_twice(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    async with la_credentials.get_client() as client:
        async with client.session(LITE, reason_on_success="MAX_DURATION_REACHED") as session:
            await session.stop("AGENT_HANG_UP")
        assert la_server.stops() == [(session.session_id, "AGENT_HANG_UP")]
        async with client.session(LITE, reason_on_success="MAX_DURATION_REACHED") as other:
            pass
        assert la_server.stops()[-1] == (other.session_id, "MAX_DURATION_REACHED")


async def test_a_failed_start_still_stops_the_session_it_may_have_opened(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    # The server starts the session, then answers with an error envelope: the start "failed"
    # but the session is open, and only a stop by ID closes it.
    la_server.fail("start", Fault(status=200, code=5000, message="media server busy", act=True))
    async with la_credentials.get_client() as client:
        with pytest.raises(LiveAvatarResponseError, match="media server busy"):
            async with client.session(LITE):
                pytest.fail("the block must not run when start failed")
    ((session_id, reason),) = la_server.stops()
    assert la_server.sessions[session_id].started
    assert reason == "SERVER_ERROR"
    assert la_server.sessions[session_id].end_at is not None


async def test_a_stop_whose_answer_was_lost_is_not_an_error_once_the_session_has_ended(
    la_url: str, la_server: LiveAvatarServer, engine_sleep: RecordingSleep
):
    # First stop: the server ends the session but answers 502; the engine retries (stop is
    # idempotent), the retry hears "already stopped", and the session's record confirms it.
    la_server.fail("stop", Fault(status=502, code=502, message="bad gateway", act=True))
    credentials = LiveAvatarCredentials(api_key=la_server.api_key, base_url=la_url)
    async with (
        credentials.get_client(**client_options(engine_sleep)) as client,
        client.session(LITE) as session,
    ):
        pass
    assert [reason for _, reason in la_server.stops()] == ["USER_CLOSED", "USER_CLOSED"]
    assert session.stopped_with == "USER_CLOSED"
    assert len(engine_sleep.calls) == 1


async def test_a_stop_that_fails_after_a_clean_exit_is_raised(
    la_url: str, la_server: LiveAvatarServer, engine_sleep: RecordingSleep
):
    la_server.fail("stop", Fault(status=503, code=503, message="down"), times=2)
    credentials = LiveAvatarCredentials(api_key=la_server.api_key, base_url=la_url, max_attempts=2)
    async with credentials.get_client(**client_options(engine_sleep)) as client:
        with pytest.raises(ProviderUnavailableError, match="stop session"):
            async with client.session(LITE) as session:
                pass
        assert session.stopped_with is None
        assert (await client.get_session(session.session_id)).end_at is None


async def test_a_stop_that_fails_after_an_exception_keeps_the_original_exception(
    la_url: str,
    la_server: LiveAvatarServer,
    engine_sleep: RecordingSleep,
    caplog: pytest.LogCaptureFixture,
):
    la_server.fail("stop", Fault(status=503, code=503, message="down"), times=2)
    credentials = LiveAvatarCredentials(api_key=la_server.api_key, base_url=la_url, max_attempts=2)
    async with credentials.get_client(**client_options(engine_sleep)) as client:
        with pytest.raises(RuntimeError, match="the real problem"):
            async with client.session(LITE) as session:
                raise RuntimeError("the real problem")
    assert f"Could not stop LiveAvatar session {session.session_id}" in caplog.text
    assert la_server.api_key not in caplog.text


async def test_list_sessions_pages_through_a_real_server(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    active = [la_server.add_session().id for _ in range(5)]
    historic = [la_server.add_session(ended=True).id for _ in range(3)]
    async with la_credentials.get_client() as client:
        assert [s.id for s in await client.list_sessions("active", page_size=2)] == active
        listed = await client.list_sessions("historic", page_size=2)
    assert [s.id for s in listed] == historic
    assert {s.end_reason for s in listed} == {"USER_CLOSED"}
    pages = [query["page"] for op, query in la_server.calls if op == "list"]
    assert pages == ["1", "2", "3", "1", "2"]


async def test_transcript_follows_next_timestamp_over_a_real_server(
    la_credentials: LiveAvatarCredentials, la_server: LiveAvatarServer
):
    record = la_server.add_session()
    record.transcript = [
        {
            "role": role,
            "transcript": f"line {i}",
            "absolute_timestamp": 1000 + i * 10,
            "relative_timestamp": i,
        }
        for i, role in enumerate(["avatar", "user", "avatar", "user", "avatar"])
    ]
    async with la_credentials.get_client() as client:
        transcript = await client.get_transcript(record.id)
        later = await client.get_transcript(record.id, start_timestamp=1030)
    assert [e.transcript for e in transcript.entries] == [f"line {i}" for i in range(5)]
    assert transcript.pages == 3
    assert transcript.session_active is True
    starts = [q.get("start_timestamp") for op, q in la_server.calls if op == "transcript"]
    assert starts[:3] == [None, "1020", "1040"]
    assert [e.transcript for e in later.entries] == ["line 3", "line 4"]
