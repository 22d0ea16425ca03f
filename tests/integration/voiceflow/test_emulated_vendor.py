"""Voiceflow as documented today, against the emulator over real HTTP: environments of projects
made before environments existed, variables that a session start does not reset, and completion
pieces tied by their messageID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, run_emulator
from prefect_sessions.errors import NotFoundError
from prefect_sessions.voiceflow import (
    CompletionTrace,
    LaunchAction,
    TextAction,
    TurnConfig,
    VoiceflowCredentials,
)

KEY = SecretStr("VF.DM.emulated-vendor.key")


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(EmulatorConfig()) as handle:
        handle.set_limit("voiceflow", "off")
        yield handle


def credentials(url: str, project: str = "modern", environment: str | None = "main"):
    return VoiceflowCredentials(
        api_key=KEY, project_id=project, base_url=url, environment=environment
    )


async def test_a_project_older_than_environments_has_no_main(emulator: EmulatorHandle) -> None:
    emulator.state.voiceflow.legacy_projects.add("legacy")
    async with credentials(emulator.url, "legacy").get_client() as client:
        with pytest.raises(NotFoundError) as refused:
            await client.start_session("ada")
        said = str(refused.value)
        assert "no environment 'main'" in said
        assert "'development' and 'production'" in said
        assert "credentials block's environment" in said
    async with credentials(emulator.url, "legacy", "production").get_client() as client:
        session = await client.start_session("ada")
    assert session.environment == "production"


async def test_variables_set_before_a_session_starts_are_kept(emulator: EmulatorHandle) -> None:
    async with credentials(emulator.url).get_client() as client:
        await client.update_variables("grace", {"plan": "gold"})
        session = await client.start_session("grace")
        await client.interact(session, LaunchAction())
        state = await client.get_state("grace")
    assert state.variables["plan"] == "gold"


async def test_completion_pieces_carry_one_message_id(emulator: EmulatorHandle) -> None:
    async with credentials(emulator.url).get_client() as client:
        session = await client.start_session("lin")
        await client.interact(session, TextAction(payload="I need a refund"))
        config = TurnConfig(completion_events=True)
        async with client.interact_stream(session, "order 98765", config=config) as stream:
            pieces = [trace async for trace in stream if isinstance(trace, CompletionTrace)]
        turn = stream.result
    assert len(pieces) > 2
    assert len({piece.payload.message_id for piece in pieces}) == 1
    assert pieces[0].payload.message_id is not None
    assert "98765" in turn.text
