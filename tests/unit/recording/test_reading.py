"""What a past conversation's logs become: steps, replies and expectations."""

from __future__ import annotations

import json

import pytest

from prefect_sessions.recording.redaction import redact
from prefect_sessions.recording.suite_text import expectations, fingerprint
from prefect_sessions.seam.transcripts import RecordedReply, RecordedStep
from prefect_sessions.seam.turns import Expectation, Reply
from prefect_sessions.voiceflow.transcripts import (
    UnreadableLog,
    _data,
    _legacy_entry,
    steps_from_logs,
)


def _text(message: str) -> dict:
    return {"type": "text", "payload": {"message": message}}


def test_a_turn_without_a_reply_never_takes_the_next_turns_reply():
    """voiceflow-cli's to-test searched forward past the next user turn; here each action keeps
    only the traces before the next action."""
    steps = steps_from_logs(
        [
            ("action", {"type": "launch"}),
            ("trace", _text("Hello")),
            ("action", {"type": "text", "payload": "are you there?"}),
            ("action", {"type": "text", "payload": "refund"}),
            ("trace", _text("Sure, a refund.")),
        ]
    )
    assert [(s.kind, s.value, s.reply.messages) for s in steps] == [
        ("launch", None, ("Hello",)),
        ("text", "are you there?", ()),
        ("text", "refund", ("Sure, a refund.",)),
    ]
    assert expectations(steps[1].reply, 0.8) == [{"no_reply": True}]


def test_data_as_a_json_string_or_an_object_reads_the_same():
    trace = _text("Hi")
    assert _data({"type": "trace", "data": json.dumps(trace)}) == _data(
        {"type": "trace", "data": trace}
    )
    with pytest.raises(UnreadableLog, match="not JSON"):
        _data({"type": "trace", "data": "{broken"})


def test_buttons_variables_and_url_buttons():
    choice = {
        "type": "choice",
        "payload": {
            "buttons": [
                {
                    "name": "Refund",
                    "request": {"type": "path-refund", "payload": {"label": "Refund"}},
                },
                {
                    "name": "Help centre",
                    "request": {
                        "type": "path-x",
                        "payload": {"actions": [{"type": "open_url", "payload": {"url": "u"}}]},
                    },
                },
            ]
        },
    }
    log = {
        "type": "log",
        "payload": {
            "kind": "step.set",
            "message": {"changedVariables": {"topic": {"before": None, "after": "refund"}}},
        },
    }
    steps = steps_from_logs(
        [
            ("action", {"type": "launch"}),
            ("trace", choice),
            ("action", {"type": "path-refund", "payload": {"label": "Refund"}}),
            ("trace", _text("Your order number?")),
            ("trace", log),
        ]
    )
    assert steps[0].reply.buttons == ("Refund",)  # a URL button is not one to press
    assert steps[1].kind == "button"
    assert steps[1].value == "Refund"
    assert steps[1].reply.variables == {"topic": "refund"}
    assert expectations(steps[1].reply, 0.7) == [
        {"similar": {"to": "Your order number?", "threshold": 0.7}},
        {"variable": {"name": "topic", "equals": "refund"}},
    ]


def test_an_action_that_cannot_be_replayed_is_unreadable():
    with pytest.raises(UnreadableLog, match="'carousel-thing' cannot be replayed"):
        steps_from_logs([("action", {"type": "carousel-thing", "payload": 3})])


def test_intents_with_a_query_replay_as_the_words_typed():
    steps = steps_from_logs(
        [
            ("action", {"type": "intent", "payload": {"query": "refund please", "intent": {}}}),
            ("action", {"type": "intent", "payload": {"intent": {"name": "help"}}}),
        ]
    )
    assert [(s.kind, s.value) for s in steps] == [("text", "refund please"), ("intent", "help")]


def test_a_legacy_dialog_turn_reads_as_a_log_entry():
    assert _legacy_entry({"format": "request", "type": "text", "payload": "hi"}) == (
        "action",
        {"type": "text", "payload": "hi"},
    )
    assert _legacy_entry({"format": "trace", "type": "text", "payload": {"message": "Hi"}}) == (
        "trace",
        {"type": "text", "payload": {"message": "Hi"}},
    )


def test_the_same_conversation_has_the_same_fingerprint():
    one = (RecordedStep("text", "hi", RecordedReply(("Hello",))),)
    again = (RecordedStep("text", "hi", RecordedReply(("Hello",))),)
    other = (RecordedStep("text", "hi", RecordedReply(("Hello!",))),)
    assert fingerprint(one) == fingerprint(again) != fingerprint(other)


def test_redaction():
    said = "I'm ada@example.com, card 4111 1111 1111 1111, call +1 415-555-0100, order 100007"
    assert redact(said) == "I'm [EMAIL], card [CARD], call [PHONE], order 100007"


def test_the_no_reply_expectation():
    check = Expectation.model_validate({"no_reply": True})
    assert check.failure(Reply(), None) is None
    assert check.failure(Reply(messages=["Hi"]), None) == "expected no reply; it said 'Hi'"
    assert "buttons" in str(check.failure(Reply(buttons=["Go"]), None))
    with pytest.raises(ValueError, match="'no_reply' takes true"):
        Expectation.model_validate({"no_reply": "yes"})
