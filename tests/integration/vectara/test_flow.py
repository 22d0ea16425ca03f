"""End to end: Prefect flows drive a Vectara agent with the tasks, over real HTTP on 127.0.0.1.

The server is the package's emulator (``prefect_sessions.emulator``, its ``emulator`` pytest
fixture) with its scripted agent; the flows run on the session-wide Prefect test server.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prefect import flow
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr

from prefect_sessions.emulator import EmulatorHandle
from prefect_sessions.errors import ConfigurationError, NotFoundError
from prefect_sessions.vectara import (
    AgentOutputEvent,
    AgentSession,
    Compact,
    CompactionEvent,
    MessageReply,
    VectaraCredentials,
    acreate_session,
    adelete_session,
    aget_session,
    alist_events,
    alist_sessions,
    asend_input,
    asend_message,
    aupdate_session,
    create_session,
    delete_session,
    get_session,
    list_events,
    list_sessions,
    send_message,
    update_session,
)

API_KEY = "vectara-canary-FLOW-KEY-3b9f41"
AGENT = "agt_acme_support"  # the emulator's scripted agent
EVENTS_ROUTE = "POST /v2/agents/{agent_key}/sessions/{session_key}/events"


class TestVectaraCredentialsBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[VectaraCredentials]:
        return VectaraCredentials


@pytest.fixture
def credentials(emulator: EmulatorHandle) -> VectaraCredentials:
    return VectaraCredentials(base_url=emulator.url, api_key=SecretStr(API_KEY))


@pytest.mark.usefixtures("prefect_server")
async def test_an_async_flow_creates_converses_pages_updates_and_deletes(
    emulator, credentials, caplog
):
    caplog.set_level(logging.INFO)

    @flow
    async def conversation() -> dict[str, Any]:
        session = await acreate_session(
            credentials,
            AGENT,
            name="Billing question",
            key="billing_42",
            description="charged twice",
            metadata={"customer_id": "c-42", "channel": "web_chat"},
            tti_minutes=60,
        )
        first = await asend_message(credentials, AGENT, session.key, "I want a refund")
        second = await asend_message(credentials, AGENT, session.key, "It is 12345", stream=True)
        for index in range(4):
            await acreate_session(credentials, AGENT, name=f"other {index}")
        sessions = await alist_sessions(credentials, AGENT, page_size=2)
        first_two = await alist_sessions(credentials, AGENT, page_size=50, max_sessions=2)
        events = await alist_events(credentials, AGENT, session.key, page_size=3)
        updated = await aupdate_session(
            credentials, AGENT, session.key, enabled=False, metadata={"status": "refunded"}
        )
        fetched = await aget_session(credentials, AGENT, session.key)
        deleted = await adelete_session(credentials, AGENT, session.key)
        again = await adelete_session(credentials, AGENT, session.key, missing_ok=True)
        return {
            "session": session,
            "replies": [first, second],
            "sessions": sessions,
            "first_two": first_two,
            "events": events,
            "updated": updated,
            "fetched": fetched,
            "deleted": (deleted, again),
        }

    result = await conversation()

    assert result["session"].metadata == {"customer_id": "c-42", "channel": "web_chat"}
    first, second = result["replies"]
    assert isinstance(first, MessageReply)
    assert "refund" in first.text
    assert "order number" in first.text
    assert isinstance(first.events[-1], AgentOutputEvent)
    assert first.events[-1].content == first.text
    assert "12345" in second.text  # the agent kept the conversation's context
    assert result["sessions"][0].name == "Billing question"
    assert len(result["sessions"]) == 5
    assert emulator.count(route="GET /v2/agents/{agent_key}/sessions") == 3 + 1  # 3 pages + 1
    assert len(result["first_two"]) == 2
    kinds = [e.type for e in result["events"]]
    assert kinds == ["input_message", "agent_output"] * 2
    assert emulator.count(route="GET /v2/agents/{agent_key}/sessions/{session_key}/events") == 2
    assert emulator.count(route=EVENTS_ROUTE) == 2  # each message sent exactly once
    assert result["updated"].enabled is False
    assert result["fetched"].metadata == {"status": "refunded"}
    assert result["deleted"] == (True, False)
    assert f"Listed 5 Vectara sessions of agent {AGENT}" in caplog.text
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(result)


@pytest.mark.usefixtures("prefect_server")
async def test_a_flow_queues_a_message_and_compacts_the_session(emulator, credentials):
    @flow
    async def tidy() -> tuple[MessageReply, MessageReply]:
        session = await acreate_session(credentials, AGENT, name="queued")
        await asend_message(credentials, AGENT, session.key, "I want a refund")
        queued = await asend_message(
            credentials, AGENT, session.key, "It is 12345", since="start", behavior="follow_up"
        )
        compacted = await asend_input(credentials, AGENT, session.key, Compact())
        return queued, compacted

    queued, compacted = await tidy()
    # Queued with since="start", the answer holds the session's events from its start.
    assert [e.type for e in queued.events].count("agent_output") == 2
    assert "12345" in queued.text
    assert isinstance(compacted.events[0], CompactionEvent)
    assert compacted.events[0].turns_compacted == 2


@pytest.mark.usefixtures("prefect_server")
def test_a_sync_flow_uses_the_sync_twins(emulator, credentials):
    @flow
    def conversation() -> tuple[AgentSession, MessageReply, int, int, AgentSession, bool]:
        session = create_session(credentials, AGENT, name="sync", key="sync_1")
        reply = send_message(credentials, AGENT, session.key, "hello")
        events = list_events(credentials, AGENT, session.key)
        sessions = list_sessions(credentials, AGENT)
        updated = update_session(credentials, AGENT, session.key, name="renamed")
        fetched = get_session(credentials, AGENT, session.key)
        assert fetched == updated
        return (
            session,
            reply,
            len(events),
            len(sessions),
            updated,
            delete_session(credentials, AGENT, session.key),
        )

    session, reply, events, sessions, updated, deleted = conversation()
    assert session.key == "sync_1"
    assert reply.text
    assert reply.outputs[-1].content == reply.text
    assert (events, sessions) == (2, 1)
    assert updated.name == "renamed"
    assert deleted is True
    assert emulator.count(route="DELETE /v2/agents/{agent_key}/sessions/{session_key}") == 1


async def test_task_errors_reach_the_caller_typed(credentials):
    with pytest.raises(NotFoundError, match="get session"):
        await aget_session.fn(credentials, AGENT, "nobody")
    with pytest.raises(ConfigurationError, match="max_sessions"):
        await alist_sessions.fn(credentials, AGENT, max_sessions=-1)
