"""Vectara's session events as steps: each input with the agent's last answer before the next."""

from __future__ import annotations

from pydantic import TypeAdapter

from prefect_sessions.vectara.models import AgentEvent
from prefect_sessions.vectara.transcripts import steps_from_events

_events = TypeAdapter(list[AgentEvent])


def _input(text: str) -> dict:
    return {"type": "input_message", "id": "aev_1", "messages": [{"type": "text", "content": text}]}


def _output(text: str) -> dict:
    return {"type": "agent_output", "id": "aev_2", "content": text}


def test_inputs_and_answers():
    events = _events.validate_python(
        [
            _input("refund"),
            {"type": "thinking", "id": "aev_3", "content": "hmm"},
            _output("draft"),
            _output("Sure, a refund."),
            _input("hello?"),
            _input("bye"),
            _output("Goodbye."),
        ]
    )
    steps = steps_from_events(events)
    assert [(s.value, s.reply.messages) for s in steps] == [
        ("refund", ("Sure, a refund.",)),
        ("hello?", ()),
        ("bye", ("Goodbye.",)),
    ]
