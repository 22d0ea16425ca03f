"""The triggered-conversation flow on the session-wide Prefect server, against the emulator over
real HTTP: the outcome event for a passed and a failed conversation, every provider that takes
turns, and the guard against credentials passed inline. (The deployment trigger itself runs in
``tests/e2e``.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.flows import load_flow_from_entrypoint
from pydantic import SecretStr

from prefect_sessions.conversation.triggered import (
    COMPLETED_EVENT,
    FAILED_EVENT,
    ConversationNotCompleted,
)
from prefect_sessions.emulator import EmulatorHandle
from prefect_sessions.flow_parameters import inline_credentials
from prefect_sessions.liveavatar import LiveAvatarCredentials
from prefect_sessions.providers import provider_of
from prefect_sessions.seam.turns import Turn
from prefect_sessions.vectara import VectaraCredentials
from prefect_sessions.voiceflow import VoiceflowCredentials

pytestmark = pytest.mark.usefixtures("prefect_server")

ROOT = Path(__file__).resolve().parents[2]
triggered_conversation = load_flow_from_entrypoint(
    f"{ROOT / 'flows' / 'triggered_conversation.py'}:triggered_conversation"
)
KEY = "VF.DM.triggered-canary-key.0123"


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def capture(**kwargs: Any) -> None:
        events.append(kwargs)

    monkeypatch.setattr("prefect_sessions.conversation.triggered.emit_event", capture)
    return events


def turns(*items: dict[str, Any]) -> list[Turn]:
    return [Turn.model_validate(item) for item in items]


async def test_voiceflow_conversation_with_event_variables_emits_completed(
    emulator: EmulatorHandle, emitted: list[dict[str, Any]]
) -> None:
    credentials = VoiceflowCredentials(
        api_key=SecretStr(KEY), project_id="demo-project", base_url=emulator.url
    )
    result = await triggered_conversation(
        user_id="cust-42",
        turns=turns({"launch": {}}, {"text": "Order 12345 arrived broken"}),
        credentials=credentials,
        variables={"topic": "warranty"},
        source_event_id="evt-1",
    )
    assert result.status == "passed"
    [event] = emitted
    assert event["event"] == COMPLETED_EVENT
    assert event["resource"]["prefect-sessions.user-id"] == "cust-42"
    assert event["payload"]["source_event_id"] == "evt-1"
    # The reply uses the session variable that came with the event.
    assert "warranty request" in event["payload"]["last_reply"]
    assert [r["prefect.resource.role"] for r in event["related"]] == ["flow-run"]
    assert KEY not in str(event)


async def test_vectara_and_liveavatar_take_turns_too(
    emulator: EmulatorHandle, emitted: list[dict[str, Any]]
) -> None:
    vectara = VectaraCredentials(api_key=SecretStr("zwt_canary"), base_url=emulator.url)
    await triggered_conversation(
        user_id="cust-7",
        turns=turns({"text": "I need a refund", "expect": {"contains": "refund"}}),
        credentials=vectara,
        provider_fields={"agent_key": "agt_acme_support"},
    )
    avatar = LiveAvatarCredentials(api_key=SecretStr("la-canary"), base_url=emulator.url)
    await triggered_conversation(
        user_id="cust-8",
        turns=turns({"launch": {}, "expect": {"contains": "Welcome"}}),
        credentials=avatar,
    )
    assert [(e["event"], e["payload"]["provider"]) for e in emitted] == [
        (COMPLETED_EVENT, "vectara"),
        (COMPLETED_EVENT, "liveavatar"),
    ]


async def test_a_failed_expectation_emits_failed_and_fails_the_run(
    emulator: EmulatorHandle, emitted: list[dict[str, Any]]
) -> None:
    credentials = VoiceflowCredentials(
        api_key=SecretStr(KEY), project_id="demo-project", base_url=emulator.url
    )
    state = await triggered_conversation(
        user_id="cust-9",
        turns=turns({"launch": {}, "expect": {"contains": "no such words"}}),
        credentials=credentials,
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(ConversationNotCompleted):
        await state.result()
    [event] = emitted
    assert event["event"] == FAILED_EVENT
    assert event["payload"]["outcome"] == "failed"
    assert "Welcome" in event["payload"]["last_reply"]


async def test_turns_the_provider_cannot_take_fail_before_any_request(
    emulator: EmulatorHandle, emitted: list[dict[str, Any]]
) -> None:
    credentials = VectaraCredentials(api_key=SecretStr("zwt_canary"), base_url=emulator.url)
    state = await triggered_conversation(
        user_id="cust-10",
        turns=turns({"launch": {}}),
        credentials=credentials,
        return_state=True,
    )
    assert state.is_failed()
    [event] = emitted
    assert event["event"] == FAILED_EVENT
    assert event["payload"]["outcome"] == "errored"
    assert "does not take 'launch' turns" in event["payload"]["reason"]
    assert "needs 'agent_key'" in event["payload"]["reason"]
    assert emulator.count("requests") == 0


def test_inline_credentials_are_told_apart_from_references() -> None:
    parameters = {
        "credentials": {"$ref": {"block_document_id": "6a3f"}},
        "other": {"api_key": "**********", "project_id": "p"},
        "none": None,
    }
    assert inline_credentials(parameters, ["credentials", "other", "none", "missing"]) == ["other"]
    block = VoiceflowCredentials(api_key=SecretStr(KEY), project_id="p")
    assert provider_of(block).name == "voiceflow"
