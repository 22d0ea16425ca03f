"""Voiceflow end to end: Prefect flows on a real server, real HTTP to the emulator on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from prefect import flow

from prefect_sessions.emulator import run_emulator
from prefect_sessions.voiceflow import (
    CompletionTrace,
    EventAction,
    LaunchAction,
    SessionKeyRejectedError,
    State,
    TurnConfig,
    VoiceflowCredentials,
    adelete_state,
    aemit_session_event,
    aget_state,
    ainteract,
    alegacy_interact,
    astart_session,
    aupdate_state,
    aupdate_variables,
    get_state,
    interact,
    start_session,
    update_variables,
)

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with run_emulator() as emulator:
        yield emulator.url


@pytest.fixture
def credentials(emulator_url: str) -> VoiceflowCredentials:
    return VoiceflowCredentials(
        api_key="VF.DM.e2e.key", project_id="demo-project", base_url=emulator_url
    )


async def test_an_async_flow_runs_launch_text_patch_variables_and_get_state(credentials):
    @flow
    async def refund_conversation():
        session = await astart_session(credentials, "e2e-ada")
        greeting = await ainteract(credentials, session, LaunchAction(), variables={"name": "Ada"})
        refund = await ainteract(credentials, session, "I need a refund")
        await aupdate_variables(credentials, "e2e-ada", {"tier": "gold"})
        state = await aget_state(credentials, "e2e-ada")
        return greeting, refund, state

    greeting, refund, state = await refund_conversation()
    assert "Welcome" in greeting.text
    assert [b.name for b in greeting.buttons]  # the agent offers its menu
    assert "refund" in refund.text
    assert re.search(r"order (number|id)", refund.text)
    assert state.variables["tier"] == "gold"
    assert state.variables["name"] == "Ada"  # set with the launch turn
    assert state.variables["topic"] == "refund"  # set by the agent


def test_a_sync_flow_runs_the_same_lifecycle(credentials):
    @flow
    def sync_conversation():
        session = start_session(credentials, "e2e-bob")
        interact(credentials, session, LaunchAction())
        update_variables(credentials, "e2e-bob", {"tier": "silver"})
        return get_state(credentials, "e2e-bob")

    assert sync_conversation().variables["tier"] == "silver"


async def test_a_streamed_turn_assembles_completion_pieces_into_the_same_answer(credentials):
    async with credentials.get_client() as client:
        session = await client.start_session("e2e-stream")
        await client.interact(session, LaunchAction())
        config = TurnConfig(completion_events=True)
        async with client.interact_stream(session, "where is my order?", config=config) as stream:
            pieces = [trace async for trace in stream if isinstance(trace, CompletionTrace)]
        assert stream.finished
        states = [p.payload.state for p in pieces]
        assert (states[0], states[-1]) == ("start", "end")
        assert len(pieces) > 3  # the answer really came in pieces
        streamed = stream.result.text
        session = await client.start_session("e2e-stream")
        await client.interact(session, LaunchAction())
        whole = await client.interact(session, "where is my order?")
    assert streamed == whole.text
    assert "business days" in streamed


async def test_a_superseded_session_key_is_refused_with_a_clear_error(credentials):
    async with credentials.get_client() as client:
        first = await client.start_session("e2e-twice")
        second = await client.start_session("e2e-twice")
        await client.interact(second, LaunchAction())
        with pytest.raises(SessionKeyRejectedError, match="superseded") as caught:
            await client.interact(first, LaunchAction())
    assert caught.value.superseded is True
    assert first.session_key.get_secret_value() not in str(caught.value)


async def test_a_script_presses_a_button_by_its_label(credentials):
    async with credentials.get_client() as client, client.conversation("e2e-buttons") as chat:
        await chat.launch()
        turn = await chat.choose("Track my order")
        assert "business days" in turn.text
        assert (await chat.state()).variables["topic"] == "tracking"
    async with credentials.get_client() as client:
        assert (await client.get_state("e2e-buttons")).variables == {}  # deleted on end


async def test_every_voiceflow_row_of_the_design_table_works_from_a_flow(credentials):
    split = credentials.model_copy(update={"environment": None})

    @flow
    async def every_endpoint():
        session = await astart_session(split, "e2e-all")  # the traffic-split route
        launched = await ainteract(credentials, session, LaunchAction(), stream=True)
        legacy = await alegacy_interact(credentials, "e2e-legacy", "I need a refund")
        replaced = await aupdate_state(credentials, "e2e-all", State(variables={"only": "this"}))
        await aemit_session_event(credentials, "call-42", EventAction.named("hung_up"))
        await adelete_state(credentials, "e2e-all")
        after = await aget_state(credentials, "e2e-all")
        return session, launched, legacy, replaced, after

    session, launched, legacy, replaced, after = await every_endpoint()
    assert session.environment is None
    assert "Welcome" in launched.text
    assert "refund" in legacy.text
    assert replaced.variables == {"only": "this"}
    assert after.variables == {}
