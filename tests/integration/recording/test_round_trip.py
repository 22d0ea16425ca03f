"""Suites from real conversations, end to end: the demo suite run against the emulator, its
transcripts recorded into a new suite, the recorded suite run (it passes), then the agent broken
(exactly the affected conversations fail, and the comparison names them). Real HTTP on
127.0.0.1, a real Prefect server, the CLI as a user calls it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from prefect_sessions.cli import main
from prefect_sessions.emulator.agent import AgentScript
from prefect_sessions.emulator.server import run_emulator

pytestmark = pytest.mark.usefixtures("prefect_server")

EXAMPLES = Path(__file__).parents[3] / "examples"
ORDER_REPLY = "Thanks! I found order {order_number}."


def _demo_suite(tmp_path: Path, url: str) -> Path:
    text = (EXAMPLES / "support-suite.yaml").read_text(encoding="utf-8")
    suite = tmp_path / "support-suite.yaml"
    suite.write_text(text.replace("http://127.0.0.1:8787", url), encoding="utf-8")
    (tmp_path / "users.csv").write_text(
        (EXAMPLES / "users.csv").read_text(encoding="utf-8"), encoding="utf-8"
    )
    return suite


def _broken_agent() -> AgentScript:
    """The built-in agent with one reply changed: what an order number is answered with."""
    data = yaml.safe_load(AgentScript.default().model_dump_json())
    for intent in data["intents"]:
        if intent["name"] == "order_number":
            intent["replies"][0] = {
                "generate": "We could not find order {order_number}. Please call our store "
                "between nine and five on weekdays."
            }
    return AgentScript.model_validate(data)


def _failing(report: Path) -> set[str]:
    data = json.loads(report.read_text(encoding="utf-8"))
    return {c["id"] for c in data["conversations"] if c["status"] != "passed"}


def test_record_the_demo_run_then_replay_it_then_break_one_reply(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VOICEFLOW_API_KEY", "VF.DM.record-test")
    monkeypatch.delenv("CI", raising=False)
    results = str(tmp_path / "results")
    with run_emulator() as emulator:
        # The runtime's limit is not what this test is about: 200 conversations in seconds.
        emulator.set_limit("voiceflow", "100000/60s")
        demo = _demo_suite(tmp_path, emulator.url)
        assert main(["run", str(demo), "--results-dir", results, "--progress", "none"]) == 0
        ran = len(emulator.state.voiceflow.transcripts)
        assert ran == 200  # greet, and a refund conversation per row

        recorded = tmp_path / "recorded.yaml"
        code = main(["record", "--suite", str(demo), "--out", str(recorded), "--max", "500"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "Recorded 200 conversations from voiceflow" in out
        # Two full search pages (take is at most 100), an empty third, a fetch per transcript.
        assert emulator.count(route="POST /v1/transcript/project/{projectID}") == 3
        assert emulator.count(route="GET /v1/transcript/{transcriptID}") == 200

        suite = yaml.safe_load(recorded.read_text(encoding="utf-8"))
        assert len({c["id"] for c in suite["conversations"]}) == 200
        kinds = {next(iter(t)) for c in suite["conversations"] for t in c["turns"]}
        assert kinds == {"launch", "button", "text"}
        expected = [e for c in suite["conversations"] for t in c["turns"] for e in t["expect"]]
        assert any(e.get("variable") == {"name": "topic", "equals": "refund"} for e in expected)
        assert any(e.get("button") == "That's all, thanks" for e in expected)

        report = tmp_path / "replay.json"
        argv = ["run", str(recorded), "--results-dir", results, "--progress", "none"]
        assert main([*argv, "--report", str(report)]) == 0, capsys.readouterr()
        assert _failing(report) == set()

        # The agent changes one reply: the conversations that reach it fail, and no other.
        affected = {
            c["id"]
            for c in suite["conversations"]
            if any(
                "similar" in e and e["similar"]["to"].startswith("Thanks! I found order")
                for t in c["turns"]
                for e in t["expect"]
            )
        }
        assert 0 < len(affected) < len(suite["conversations"])
        emulator.state.agent = _broken_agent()
        broken = tmp_path / "broken.json"
        assert main([*argv, "--report", str(broken)]) == 1
        assert _failing(broken) == affected
        comparison = json.loads(broken.read_text(encoding="utf-8"))["comparison"]
        assert set(comparison["newly_failing"]) == affected
        printed = capsys.readouterr().out
        assert re.search(rf"{len(affected)} newly failing", printed), printed


def test_record_again_gives_the_same_suite(tmp_path, monkeypatch, capsys):
    """Stable names: the same transcripts give the same IDs and the same file on every run."""
    monkeypatch.setenv("VOICEFLOW_API_KEY", "VF.DM.record-test")
    with run_emulator() as emulator:
        demo = _demo_suite(tmp_path, emulator.url)
        first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
        assert main(["crawl", "--suite", str(demo), "--out", str(tmp_path / "c.yaml")]) == 0
        assert main(["record", "--suite", str(demo), "--out", str(first)]) == 0
        assert main(["record", "--suite", str(demo), "--out", str(second)]) == 0
        assert first.read_text() == second.read_text()
        assert "Recorded 4 conversations" in capsys.readouterr().out
