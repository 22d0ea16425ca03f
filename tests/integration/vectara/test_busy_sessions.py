"""Vectara as it is today, against the emulator over real HTTP: a session answering one input
refuses another with 409 (typed, never resent silently) unless it is queued with ``since``; the
conversation layer waits for the running turn; interrupt, compact, fork, metadata filters, the
session's status and context usage."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, run_emulator
from prefect_sessions.errors import NotFoundError
from prefect_sessions.seam.adapter import ConnectionSettings
from prefect_sessions.seam.turns import Turn
from prefect_sessions.vectara import (
    ClientToolPendingCall,
    CompactionEvent,
    InputMessageEvent,
    SessionBusyError,
    SessionInterruptedEvent,
    VectaraCredentials,
)
from prefect_sessions.vectara.adapter import VectaraAdapter

AGENT = "agt_acme_support"
KEY = "vectara-busy-key"


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(EmulatorConfig()) as handle:
        handle.set_limit("vectara", "off")
        yield handle


def credentials(url: str) -> VectaraCredentials:
    return VectaraCredentials(base_url=url, api_key=SecretStr(KEY), max_attempts=1)


async def test_a_second_input_to_a_running_session_is_refused_typed_or_queued_with_since(
    emulator: EmulatorHandle,
) -> None:
    emulator.state.vectara.answer_seconds = 0.4
    async with credentials(emulator.url).get_client() as client:
        session = await client.create_session(AGENT, name="busy")
        first = asyncio.ensure_future(client.send_message(AGENT, session.key, "I need a refund"))
        while (await client.get_session(AGENT, session.key)).status != "running":
            await asyncio.sleep(0.02)  # the first input reaching the agent has no event to await
        with pytest.raises(SessionBusyError) as refused:
            await client.send_message(AGENT, session.key, "hello?")
        assert refused.value.status_code == 409
        assert "already running" in (refused.value.server_message or "")
        queued = await client.send_message(
            AGENT, session.key, "order 424242", since="start", behavior="follow_up"
        )
        await first
        events = [event async for event in client.list_events(AGENT, session.key)]
        after = await client.get_session(AGENT, session.key)
    inputs = [e.messages[0].content for e in events if isinstance(e, InputMessageEvent)]
    assert inputs == ["I need a refund", "order 424242"]  # "hello?" was never taken
    assert "refund request" in queued.text  # the queued message was answered after the first
    assert after.status == "stopped"
    assert after.session_context_usage is not None
    assert after.session_context_usage.total_tokens > 0


async def test_a_conversation_turn_waits_for_the_running_answer_and_sends_once(
    emulator: EmulatorHandle,
) -> None:
    emulator.state.vectara.answer_seconds = 0.6
    settings = ConnectionSettings(
        base_url=emulator.url, api_key=SecretStr(KEY), fields={"agent_key": AGENT}
    )
    async with VectaraAdapter(settings) as adapter:
        handle = await adapter.start("waits", {})
        other = asyncio.ensure_future(
            adapter.client.send_message(AGENT, handle.session_key, "I need a refund")
        )
        while (await adapter.client.get_session(AGENT, handle.session_key)).status != "running":
            await asyncio.sleep(0.02)
        reply = await adapter.turn(handle, Turn.model_validate({"text": "order 424242"}))
        await other
        usage = adapter.usage(handle)
        events = [e async for e in adapter.client.list_events(AGENT, handle.session_key)]
    assert "refund request" in reply.text
    assert usage["context_tokens"] > 0  # what the conversation's last agent call used
    inputs = [e.messages[0].content for e in events if isinstance(e, InputMessageEvent)]
    assert inputs == ["I need a refund", "order 424242"]
    # Three posts: the other input, the turn refused with 409, the turn sent again once idle.
    posts = [
        row
        for row in emulator.counters()
        if row["route"].startswith("POST") and "events" in row["route"]
    ]
    assert sum(row["requests"] for row in posts) == 3


async def test_interrupt_compact_fork_and_metadata_filter(emulator: EmulatorHandle) -> None:
    async with credentials(emulator.url).get_client() as client:
        session = await client.create_session(AGENT, name="tools", metadata={"tier": "gold"})
        await client.create_session(AGENT, name="other", metadata={"tier": "free"})
        await client.send_message(AGENT, session.key, "I need a refund")

        emulator.state.vectara.answer_seconds = 0.4
        running = asyncio.ensure_future(client.send_message(AGENT, session.key, "hello"))
        while (await client.get_session(AGENT, session.key)).status != "running":
            await asyncio.sleep(0.02)
        stopped = await client.interrupt(AGENT, session.key)
        cut = await running
        emulator.state.vectara.answer_seconds = 0.0
        assert isinstance(stopped.events[0], SessionInterruptedEvent)
        assert any(isinstance(e, SessionInterruptedEvent) for e in cut.events)
        assert cut.text == ""

        compacted = await client.compact(AGENT, session.key)
        (compaction,) = compacted.events
        assert isinstance(compaction, CompactionEvent)
        assert compaction.turns_compacted == 2
        shown = [e async for e in client.list_events(AGENT, session.key)]
        every = [e async for e in client.list_events(AGENT, session.key, include_hidden=True)]
        assert [e.type for e in shown] == ["compaction"]
        assert len(every) == compaction.events_compacted + 1

        fork = await client.create_session(AGENT, name="fork", from_session=session.key)
        forked = [e async for e in client.list_events(AGENT, fork.key, include_hidden=True)]
        assert len(forked) == len(every)
        gold = [s.key async for s in client.list_sessions(AGENT, metadata_filter="tier = 'gold'")]
    assert gold == [session.key]


async def test_a_streamed_answer_reports_its_echo_and_context_usage(emulator) -> None:
    async with credentials(emulator.url).get_client() as client:
        session = await client.create_session(AGENT, name="stream")
        reply = await client.send_message_streamed(AGENT, session.key, "where is my order")
    assert "order number" in reply.text
    assert reply.input_event_id is not None
    assert reply.input_event_id.startswith("aev_")
    assert reply.context_usage is not None
    assert reply.context_usage.model_context_window == 128_000


async def test_events_are_hidden_unhidden_and_deleted_through_the_client(
    emulator: EmulatorHandle,
) -> None:
    async with credentials(emulator.url).get_client() as client:
        session = await client.create_session(AGENT, name="tidy")
        await client.send_message(AGENT, session.key, "I need a refund")
        (asked, _answer) = [e async for e in client.list_events(AGENT, session.key)]
        hidden = await client.hide_event(AGENT, session.key, asked.id)
        assert isinstance(hidden, InputMessageEvent)
        shown = [e.id async for e in client.list_events(AGENT, session.key)]
        assert asked.id not in shown
        await client.unhide_event(AGENT, session.key, asked.id)
        assert asked.id in [e.id async for e in client.list_events(AGENT, session.key)]
        await client.delete_event(AGENT, session.key, asked.id)
        every = [e.id async for e in client.list_events(AGENT, session.key, include_hidden=True)]
        assert asked.id not in every
        with pytest.raises(NotFoundError):
            await client.get_event(AGENT, session.key, asked.id)
        assert await client.outstanding_client_tool_calls(AGENT, session.key) == []


def test_a_pending_client_tool_calls_arguments_stay_out_of_its_repr() -> None:
    call = ClientToolPendingCall(
        event_id="aev_1",
        tool_configuration_name="notify",
        tool_name="notify",
        arguments={"token": "xoxb-canary-secret"},
    )
    assert "xoxb-canary-secret" not in repr(call)
    assert call.arguments["token"] == "xoxb-canary-secret"


@pytest.mark.parametrize("latency_ms", [0.0, 400.0], ids=["defaults", "latency 400 ms"])
async def test_two_inputs_at_once_get_one_201_and_one_409_as_the_vendor_gives(
    latency_ms: float,
) -> None:
    # The emulator's defaults (a scripted agent that thinks 250 ms), and with latency added:
    # the session is running from the first input's arrival, before the latency is spent.
    import httpx

    config = EmulatorConfig(latency_ms=latency_ms, limits={"vectara": None})
    assert config.vectara_think_ms > 0
    with run_emulator(config) as handle:
        async with httpx.AsyncClient(
            base_url=handle.url, headers={"x-api-key": KEY}, timeout=10
        ) as http:
            created = await http.post(f"/v2/agents/{AGENT}/sessions", json={"name": "at once"})
            events = f"/v2/agents/{AGENT}/sessions/{created.json()['key']}/events"
            message = {"type": "input_message", "messages": [{"type": "text", "content": "hi"}]}
            answers = await asyncio.gather(
                http.post(events, json=message), http.post(events, json=message)
            )
            assert sorted(answer.status_code for answer in answers) == [201, 409]
            refused = next(answer for answer in answers if answer.status_code == 409)
            assert set(refused.json()) == {"messages", "request_id"}
            assert "already running" in refused.json()["messages"][0]
            # Queued with since, a second input waits for the running one and is answered after.
            running = asyncio.ensure_future(http.post(events, json=message))
            session = events.removesuffix("/events")
            while (await http.get(session)).json()["status"] != "running":
                await asyncio.sleep(0.01)  # its arrival has no event to await
            second = await http.post(events, json={**message, "since": "start"})
            first = await running
            assert (first.status_code, second.status_code) == (201, 201)
            taken = [e for e in second.json()["events"] if e["type"] == "input_message"]
            assert len(taken) == 3  # the history from the start: the first input, then both
