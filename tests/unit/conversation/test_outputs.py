"""Named outputs: each kind taken from what a conversation gave, missing ones None with a reason."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from prefect_sessions.conversation.outputs import Output, Taken, parse_path, take, take_all
from prefect_sessions.seam.turns import Reply

TAKEN = Taken(
    replies=[
        Reply(messages=["Welcome!"]),
        Reply(messages=[]),
        Reply(
            messages=['{"category": "billing"}'],
            structured={"category": "billing", "items": [{"sku": "A1"}]},
        ),
        Reply(messages=["Your balance is 42.50 euros"]),
    ],
    variables={"topic": "refund"},
    status="failed",
    reason="turn 4: expected ...",
    counts={"requests": 6, "rate_limited": 1},
    usage={"credits": 2.5},
)


def output(**spec: object) -> Output:
    return Output.model_validate(spec)


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ({"reply": "last"}, "Your balance is 42.50 euros"),
        ({"reply": 1}, "Welcome!"),
        ({"regex": r"balance is (?P<amount>[0-9.]+)", "group": "amount"}, "42.50"),
        ({"regex": r"balance is ([0-9.]+) (\w+)", "group": 2}, "euros"),
        ({"structured": "$.category"}, "billing"),
        ({"structured": "$.items[0]['sku']"}, "A1"),
        ({"structured": "$"}, {"category": "billing", "items": [{"sku": "A1"}]}),
        ({"variable": "topic"}, "refund"),
        ({"usage": "requests"}, 6),
        ({"usage": "credits"}, 2.5),
        ({"status": True}, "failed"),
        ({"reason": True}, "turn 4: expected ..."),
        ({"transcript": True}, 'Welcome!\n{"category": "billing"}\nYour balance is 42.50 euros'),
    ],
)
def test_each_kind_is_taken_from_what_the_conversation_gave(spec, value):
    assert take(output(**spec), TAKEN) == (value, None)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"reply": 2}, "turn 2 got no reply"),
        ({"reply": 9}, "turn 9 was not reached (4 turns taken)"),
        ({"regex": "refund (\\d+)"}, "no reply matched 'refund (\\\\d+)'"),
        ({"structured": "$.missing"}, "no key 'missing' (it has category, items)"),
        ({"structured": "$.items[3]"}, "index 3 is past the end of a list of 1"),
        ({"structured": "$.category.name"}, "cannot take 'name' from a str"),
        ({"variable": "order"}, "no variable 'order' was set"),
        ({"usage": "minutes"}, "no usage 'minutes' was reported"),
    ],
)
def test_a_missing_output_is_none_with_the_reason(spec, why):
    assert take(output(**spec), TAKEN) == (None, why)


def test_nothing_taken_gives_notes_not_errors():
    values, notes = take_all(
        {"answer": output(reply="last"), "topic": output(variable="topic")}, Taken()
    )
    assert values == {"answer": None, "topic": None}
    assert notes == {
        "answer": "the agent gave no reply",
        "topic": "the variables could not be read",
    }


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ({"regex": "balance (.*)", "group": 2}, "has no group 2 (it has 1)"),
        ({"regex": "balance (.*)", "group": "amount"}, "has no group 'amount'"),
        ({"regex": "(unclosed"}, "does not compile"),
        ({"structured": "category"}, "start it with '$'"),
        ({"structured": "$..deep"}, "is not a JSON path at character 2"),
        ({"reply": "first"}, "reply: 'last', or the number of a turn"),
        ({"transcript": False}, "write {transcript: true}"),
        ({"reply": "last", "regex": "x"}, "exactly one kind key"),
        ({"variable": "topic", "group": 1}, "'group' goes with a 'regex' output only"),
    ],
)
def test_an_output_that_cannot_be_taken_is_refused_saying_how_to_write_it(spec, said):
    with pytest.raises(ValidationError, match=re.escape(said)):
        Output.model_validate(spec)


def test_json_paths():
    assert parse_path("$") == []
    assert parse_path("$.a.b[2]['c d'][\"e\"]") == ["a", "b", 2, "c d", "e"]
