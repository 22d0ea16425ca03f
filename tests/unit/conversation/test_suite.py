"""Suite files: every mistake is reported with its file, line, path and fix, before any request."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from prefect_sessions.conversation.dataset import iter_conversations
from prefect_sessions.conversation.suite import SuiteError
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.seam.turns import Expectation, Reply, Turn

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ENV = {
    "VOICEFLOW_API_KEY": "k",
    "VECTARA_API_KEY": "k",
    "LIVEAVATAR_API_KEY": "k",
    "EMULATOR_MODEL_KEY": "k",
}

HEAD = """\
name: t
provider: voiceflow
connection: {base_url: "http://127.0.0.1:1", api_key_env: VOICEFLOW_API_KEY, project_id: p}
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, environ=ENV) -> list[str]:
    with pytest.raises(SuiteError) as caught:
        load_suite(write(tmp_path, text), environ=environ)
    return caught.value.problems


@pytest.mark.parametrize("suite", sorted(EXAMPLES.glob("*-suite.yaml")), ids=lambda p: p.name)
def test_the_example_suites_are_valid(suite):
    loaded = load_suite(suite, environ=ENV)
    assert sum(1 for _ in iter_conversations(loaded)) >= 2


def test_the_main_example_has_200_conversations_with_rendered_templates():
    conversations = list(
        iter_conversations(load_suite(EXAMPLES / "support-suite.yaml", environ=ENV))
    )
    assert len(conversations) == 200
    bulk = conversations[1]
    assert bulk.id == "refund-u0001"
    assert bulk.origin == "conversations[1], line 2 of users.csv"
    assert "{{" not in str(bulk.turns)


def test_bad_yaml_is_located(tmp_path):
    (found,) = problems(tmp_path, HEAD + "conversations: [\n  - id: a\n")
    assert "suite.yaml:" in found
    assert "not valid YAML" in found


def test_an_unknown_turn_kind_names_the_line_and_the_kinds(tmp_path):
    (found,) = problems(
        tmp_path,
        HEAD
        + """\
conversations:
  - id: a
    turns:
      - launch: {}
      - txt: hello
""",
    )
    assert found.startswith(f"{tmp_path / 'suite.yaml'}:8: conversations[0].turns[1]")
    assert "unknown turn kind 'txt'" in found
    assert "launch, text, button" in found


def test_a_turn_kind_the_provider_cannot_take_is_refused(tmp_path):
    text = """\
name: t
provider: vectara
connection: {api_key_env: VECTARA_API_KEY, agent_key: agt_x}
conversations:
  - id: a
    turns:
      - text: hi
      - button: Refund
        expect: [{variable: {name: topic, equals: refund}}]
"""
    found = problems(tmp_path, text)
    assert any("vectara does not support 'button' turns; use one of text" in p for p in found)
    assert any("vectara cannot check 'variable'" in p for p in found)
    assert all(":8: conversations[0].turns[1]" in p for p in found)


def test_a_missing_key_variable_is_named_with_the_fix(tmp_path):
    (found,) = problems(
        tmp_path, HEAD + "conversations: [{id: a, turns: [launch: {}]}]\n", environ={}
    )
    assert "VOICEFLOW_API_KEY is not set; export it" in found


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "conversations: [{id: a, turns: [{text: hi, expect: [{regex: '('}]}]}]",
            "invalid regular expression",
        ),
        ("conversations: [{id: a, turns: [{text: ''}]}]", "'text' takes a non-empty string"),
        (
            "conversations: [{id: a, turns: [{text: hi, expect: [{contains: x, regex: y}]}]}]",
            "exactly one kind key",
        ),
        (
            "conversations: [{id: a, turns: [{text: hi, expect: [{latency_ms_below: -1}]}]}]",
            "positive number",
        ),
        (
            "conversations: [{id: a, turns: [{text: hi, expect: [{variable: {name: x}}]}]}]",
            "exactly one of 'equals' or 'regex'",
        ),
        ("conversations: [{id: a, turns: []}]", "give 'turns' (at least one), or 'simulate'"),
        (
            "concurrency: 0\nconversations: [{id: a, turns: [launch: {}]}]",
            "greater than or equal to 1",
        ),
        (
            "conversations: [{id: a, turns: [launch: {}]}, {id: a, turns: [launch: {}]}]",
            "id 'a' is already used",
        ),
        ("conversations: [{id: '{{ row.x }}', turns: [launch: {}]}]", "templates need a 'dataset'"),
    ],
)
def test_each_mistake_gets_a_message_that_names_it(tmp_path, body, expected):
    found = problems(tmp_path, HEAD + body + "\n")
    assert any(expected in p for p in found), found


def test_connection_needs_the_provider_fields_and_one_way_to_connect(tmp_path):
    found = problems(
        tmp_path,
        """\
name: t
provider: voiceflow
connection: {api_key_env: VOICEFLOW_API_KEY, projectid: p}
conversations: [{id: a, turns: [launch: {}]}]
""",
    )
    assert any("voiceflow needs 'project_id'" in p for p in found)
    assert any("unknown field 'projectid'" in p for p in found)
    found = problems(
        tmp_path,
        HEAD + "credentials: my-block\nconversations: [{id: a, turns: [launch: {}]}]\n",
    )
    assert any("the key and base_url come from the block" in p for p in found)
    with_block = write(
        tmp_path,
        "name: t\nprovider: vectara\ncredentials: my-vectara\nconnection: {agent_key: agt_x}\n"
        "conversations: [{id: a, turns: [{text: hi}]}]\n",
        name="block.yaml",
    )
    assert load_suite(with_block, environ={}).suite.connection.provider_fields == {
        "agent_key": "agt_x"
    }


def test_an_unknown_provider_lists_the_known_ones(tmp_path):
    found = problems(tmp_path, "name: t\nprovider: dialogflow\ncredentials: b\nconversations: []\n")
    assert any(
        "unknown provider 'dialogflow': use one of liveavatar, vectara, voiceflow" in p
        for p in found
    )


def test_a_dataset_row_with_a_broken_template_names_its_line(tmp_path):
    (tmp_path / "rows.csv").write_text("user,order\nu1,1\nu2,2\n", encoding="utf-8")
    (found,) = problems(
        tmp_path,
        HEAD
        + """\
conversations:
  - id: "c-{{ row.user }}"
    dataset: rows.csv
    turns: [{text: "order {{ row.ordr }}"}]
""",
    )
    assert "line 2 of rows.csv" in found
    assert "ordr" in found


def test_datasets_in_jsonl_and_bad_encodings(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"u": "a"}\n\n{"u": "b"}\n', encoding="utf-8")
    suite = write(
        tmp_path,
        HEAD + 'conversations: [{id: "x-{{ row.u }}", dataset: rows.jsonl, turns: [launch: {}]}]\n',
    )
    assert [c.id for c in iter_conversations(load_suite(suite, environ=ENV))] == ["x-a", "x-b"]
    (tmp_path / "bad.csv").write_bytes(b"u\n\xff\xfe\n")
    (found,) = problems(
        tmp_path,
        HEAD + 'conversations: [{id: "{{ row.u }}", dataset: bad.csv, turns: [launch: {}]}]\n',
    )
    assert "is not UTF-8" in found
    suite_bytes = tmp_path / "latin.yaml"
    suite_bytes.write_bytes(HEAD.encode() + b"# caf\xe9\n")
    with pytest.raises(SuiteError, match="not UTF-8; save the file as UTF-8"):
        load_suite(suite_bytes, environ=ENV)


def test_expectations_judge_replies():
    reply = Reply(
        messages=["I can help with a Refund.", "What is your order number?"],
        trace_types=["text", "choice"],
        buttons=["Track my order"],
        latency_ms=120,
    )

    def check(raw, variables=None):
        return Expectation.model_validate(raw).failure(reply, variables)

    assert check({"contains": "refund"}) is None  # case-insensitive
    assert "to contain 'shipping'" in check({"contains": "shipping"})
    assert "not to contain" in check({"not_contains": "order"})
    assert check({"regex": r"order (number|id)"}) is None
    assert check({"trace_type": "choice"}) is None
    assert "expected a 'card' trace" in check({"trace_type": "card"})
    assert check({"button": "track my order"}) is None
    assert "within 100 ms; it took 120 ms" in check({"latency_ms_below": 100})
    assert check({"variable": {"name": "topic", "equals": "refund"}}, {"topic": "refund"}) is None
    assert check({"variable": {"name": "n", "regex": r"^\d+$"}}, {"n": 42}) is None
    assert "to be set" in check({"variable": {"name": "topic", "equals": "x"}}, {})


def test_a_turn_can_be_written_compactly():
    turn = Turn.model_validate({"intent": "order_status", "expect": {"contains": "order"}})
    assert turn.value == {"name": "order_status", "entities": {}}
    assert turn.expect[0].kind == "contains"
    assert Turn.model_validate({"no_reply": None}).value == {}


@pytest.mark.parametrize("value", [0, -0.5, 1.5, "half"])
def test_a_share_of_the_limit_outside_0_to_1_is_refused(tmp_path, value):
    text = HEAD + f"max_share: {value}\nconversations: [{{id: a, turns: [{{text: hi}}]}}]\n"
    (found,) = problems(tmp_path, text)
    assert "max_share" in found
    assert "suite.yaml:4: max_share" in found


def test_cleanup_is_off_unless_asked_for(tmp_path):
    turns = "conversations: [{id: a, turns: [{text: hi}]}]\n"
    assert load_suite(write(tmp_path, HEAD + turns), environ=ENV).suite.cleanup is False
    asked = load_suite(write(tmp_path, HEAD + "cleanup: true\n" + turns), environ=ENV)
    assert asked.suite.cleanup is True


def test_a_failure_never_pastes_a_huge_answer_whole():
    # Found by hypothesis under another seed: a 300,000-character trace type was pasted into
    # the conversation's reason.
    huge = "x" * 300_000
    reply = Reply(messages=["hi"], trace_types=["text", huge], buttons=[huge] * 50)
    for expectation in (
        Expectation.model_validate({"trace_type": "cardV2"}),
        Expectation.model_validate({"button": "Track my order"}),
        Expectation.model_validate({"variable": {"name": "tier", "equals": "gold"}}),
    ):
        failure = expectation.failure(reply, {"tier": huge, **{f"v{i}": 1 for i in range(100)}})
        assert failure is not None
        assert len(failure) < 2_000
    short = Expectation.model_validate({"trace_type": "cardV2"}).failure(
        Reply(trace_types=["text", "speak"]), None
    )
    assert short == "expected a 'cardV2' trace; got ['text', 'speak']"
