"""``prefect-sessions run --update-expectations`` against the emulator over real HTTP: stale
expectations rewritten from the agent's answers, the file's comments and layout kept, a diff
printed, what no longer matches listed and removed; never when CI is set."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from prefect_sessions.cli import main
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.emulator.server import run_emulator

SUITE = """\
# Our refund journey. Keep this comment.
name: snapshots
provider: voiceflow
connection: {{base_url: "{url}", api_key_env: UPDATE_KEY, project_id: snap}}
conversations:
  - id: refund
    turns:
      - launch: {{}}
        expect: [{{contains: Welcome}}, {{button: "Request a refund"}}, {{button: "Old button"}}]
      - button: "Request a refund"   # the first button
        expect:
          - {{contains: "store credit"}}
          - {{variable: {{name: topic, equals: returns}}}}
      - text: "My order number is 4321"
  - id: "row-{{{{ row.n }}}}"
    dataset: rows.csv
    turns:
      - launch: {{}}
"""


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("UPDATE_KEY", "VF.DM.update-test")
    monkeypatch.delenv("CI", raising=False)


def _write(tmp_path: Path, url: str) -> Path:
    (tmp_path / "rows.csv").write_text("n\n1\n2\n", encoding="utf-8")
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(url=url), encoding="utf-8")
    return path


def test_stale_expectations_are_rewritten_from_the_answers(tmp_path, capsys):
    with run_emulator() as emulator:
        path = _write(tmp_path, emulator.url)
        assert main(["run", str(path), "--update-expectations"]) == 0
    printed = capsys.readouterr().out
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Our refund journey. Keep this comment.\n")
    assert "# the first button" in text
    turns = yaml.safe_load(text)["conversations"][0]["turns"]
    first, second, third = (t["expect"] for t in turns)
    assert {"contains": "Welcome"} in first  # holds: kept as written
    assert {"button": "Old button"} not in first  # no longer offered: removed
    assert {"button": "Track my order"} in first  # offered now: added
    assert {"contains": "store credit"} not in second  # no longer holds: removed
    assert {"variable": {"name": "topic", "equals": "refund"}} in second  # the value now
    assert second[0]["similar"]["to"].startswith("I'm sorry about that.")
    assert third[0]["similar"]["to"].startswith("Thanks! I found order 4321.")
    assert {"button": "That's all, thanks"} in third
    assert "removed: refund turn 1: button 'Old button' (no longer offered)" in printed
    assert "removed: refund turn 2: contains 'store credit' (no longer holds)" in printed
    assert "left as written (dataset, templates or simulated user): row-{{ row.n }}" in printed
    assert "+++ " in printed  # the diff, for review
    assert "--- " in printed
    assert "updated 1 conversations" in printed
    load_suite(path)  # still a valid suite

    # A second update changes nothing.
    with run_emulator() as emulator:
        path.write_text(text.replace(_url(text), emulator.url), encoding="utf-8")
        before = path.read_text(encoding="utf-8")
        assert main(["run", str(path), "--update-expectations"]) == 0
        assert path.read_text(encoding="utf-8") == before
    assert "(nothing changed)" in capsys.readouterr().out


def _url(text: str) -> str:
    return text.split('base_url: "')[1].split('"')[0]


def test_it_never_writes_when_ci_is_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    with run_emulator() as emulator:
        path = _write(tmp_path, emulator.url)
        before = path.read_text(encoding="utf-8")
        assert main(["run", str(path), "--update-expectations"]) == 2
        assert emulator.count() == 0
    assert path.read_text(encoding="utf-8") == before
    err = capsys.readouterr().err
    assert "will not update expectations while CI is set" in err
    assert err.count("\n") == 1


def test_a_turn_the_agent_does_not_answer_expects_no_reply(tmp_path, capsys):
    agent = textwrap.dedent(
        """\
        name: Quiet
        greeting: {replies: [{text: "Hi."}]}
        intents:
          - {name: hush, patterns: [hush], replies: []}
        fallback: {replies: [{text: "Sorry?"}]}
        """
    )
    from prefect_sessions.emulator.agent import AgentScript
    from prefect_sessions.emulator.config import EmulatorConfig

    config = EmulatorConfig(agent=AgentScript.from_yaml(agent))
    with run_emulator(config) as emulator:
        path = tmp_path / "quiet.yaml"
        path.write_text(
            f"name: quiet\nprovider: voiceflow\nconnection: {{base_url: '{emulator.url}', "
            "api_key_env: UPDATE_KEY, project_id: q}\nconversations:\n"
            "  - id: q\n    turns:\n      - launch: {}\n      - text: hush\n"
            "        expect: [{contains: Hi}]\n",
            encoding="utf-8",
        )
        assert main(["run", str(path), "--update-expectations"]) == 0
    expect = yaml.safe_load(path.read_text())["conversations"][0]["turns"][1]["expect"]
    assert expect == [{"no_reply": True}]
