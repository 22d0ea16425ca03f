"""Judged expectations, similarity and simulated users, run through the command line against the
emulator's agent and its OpenAI-compatible model over real HTTP, on the session's Prefect server.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from prefect_sessions.cli import main
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.emulator import EmulatorHandle

pytestmark = pytest.mark.usefixtures("prefect_server")

AGENT_ROUTES = "POST /v2/agents/{agent_key}/sessions"
MODEL_ROUTE = "POST /openai/v1/chat/completions"

JUDGED = """\
conversations:
  - id: refund
    turns:
      - text: "I want a refund"
        expect:
          - contains: refund
          - judge:
              rubric: 'The agent offers a "refund" and asks for the "order number".'
              threshold: 0.9
          - similar:
              to: ["I can help you with a refund. What is your order number?"]
              threshold: 0.8
      - text: "It is order 12345"
    expect:
      - judge: {rubric: 'The agent says it "opened a refund request" for "12345".'}
  - id: wrong-promise
    turns:
      - text: "Where is my package?"
        expect:
          - judge: {rubric: 'The agent says the package "was delivered yesterday".', threshold: 0.5}
  - id: lost-card
    simulate:
      persona: "a customer who wants a refund"
      goal: "have a refund request opened"
      facts: ["My order number is 12345."]
      max_turns: 4
    expect: [{judge: {rubric: 'The agent "opened a refund request".'}}]
"""


def _suite(tmp_path: Path, emulator: EmulatorHandle, body: str, **top: Any) -> Path:
    model = top.pop(
        "judge_model",
        f'{{base_url: "{emulator.url}/openai/v1", api_key_env: JUDGED_MODEL_KEY, '
        "model: gpt-4o-mini}",
    )
    provider = top.pop("provider", "vectara")
    connection = top.pop(
        "connection",
        f'{{base_url: "{emulator.url}", api_key_env: JUDGED_AGENT_KEY, '
        "agent_key: agt_acme_support}",
    )
    lines = [f"name: judged-{tmp_path.name[-12:]}", f"provider: {provider}"]
    lines.append(f"connection: {connection}")
    if model is not None:
        lines.append(f"judge_model: {model}")
    lines += [f"{name}: {value}" for name, value in top.items()]
    path = tmp_path / "suite.yaml"
    path.write_text("\n".join(lines) + "\n" + textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGED_AGENT_KEY", "vectara-judged-key")
    monkeypatch.setenv("JUDGED_MODEL_KEY", "sk-judged-model-key")


def _run(suite: Path, tmp_path: Path, *extra: str) -> int:
    return main(
        [
            "run",
            str(suite),
            "--results-dir",
            str(tmp_path / "runs"),
            "--progress",
            "none",
            "--baseline",
            "none",
            *extra,
        ]
    )


def _results(tmp_path: Path, run_key: str) -> dict[str, ConversationResult]:
    (path,) = (tmp_path / "runs").rglob(f"{run_key}.jsonl")
    return {result.key: result for result in ResultStore(path).latest().values()}


def test_judged_expectations_similarity_and_a_simulated_user_reach_verdicts_with_scores(
    emulator: EmulatorHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = _suite(tmp_path, emulator, JUDGED)
    report, html = tmp_path / "report.json", tmp_path / "report.html"
    code = _run(
        suite,
        tmp_path,
        "--run-key",
        "j1",
        "--report",
        str(report),
        "--progress",
        "lines",
        "--html",
        str(html),
    )
    said = capsys.readouterr()
    assert code == 1, said.err  # wrong-promise fails
    # The terminal shows each judged expectation's score, threshold and reason.
    assert (
        '  judge \'The agent says it "opened a refund request" for "12345".\' '
        "(threshold 0.5): 1.00 against 0.5" in said.out
    )
    assert "  simulated user stopped: goal met after 2 user turns" in said.out
    assert "  failed wrong-promise: turn 1" in said.out
    assert "score 0.00 against 0.5" in said.out
    results = _results(tmp_path, "j1")
    assert {key: r.status for key, r in results.items()} == {
        "refund": "passed",
        "wrong-promise": "failed",
        "lost-card": "passed",
    }

    refund = results["refund"]
    judge, similar = refund.turns[0].judgements
    assert (judge.kind, judge.passed, judge.score, judge.threshold) == ("judge", True, 1.0, 0.9)
    assert "refund" in judge.reason
    # Offline (wordllama): the reply and the reference differ only in "I'm sorry about that."
    assert similar.kind == "similar"
    assert similar.passed
    assert similar.score is not None
    assert similar.score > 0.9
    (whole,) = refund.judgements
    assert whole.passed
    assert whole.score == 1.0
    assert refund.usage["judge_requests"] == 2  # the turn's judge and the conversation's
    assert refund.usage["judge_tokens"] > 0
    assert refund.requests == 3  # the agent's own requests only: a session and two inputs

    wrong = results["wrong-promise"]
    (verdict,) = wrong.turns[0].judgements
    assert not verdict.passed
    assert verdict.score == 0.0
    assert "score 0.00 against 0.5" in (wrong.reason or "")
    assert "missing 'was delivered yesterday'" in (wrong.reason or "")

    card = results["lost-card"]
    assert card.stopped == "goal met after 2 user turns"
    assert [t.simulated for t in card.turns] == [True, True]
    assert card.turns[1].turn == "text: 'My order number is 12345.'"
    assert "opened a refund request" in " ".join(card.turns[1].messages)
    assert card.judgements[0].passed
    # Two user turns, two goal checks and the final judge (the opening comes from the model).
    assert card.usage["judge_requests"] == 5
    assert emulator.count(route=MODEL_ROUTE) == 2 + 1 + 5

    (results_file,) = (tmp_path / "runs").rglob("j1.jsonl")
    for text in (results_file.read_text(), report.read_text(), said.out, said.err):
        assert "sk-judged-model-key" not in text  # the model's key is nowhere
    page = html.read_text(encoding="utf-8")
    assert "<th>lowest judged score</th>" in page
    assert "score 0.00 against 0.5" in page  # the failure's transcript, with its reason
    assert "simulated user stopped: goal met after 2 user turns" not in page  # it passed
    written = json.loads(report.read_text(encoding="utf-8"))
    assert written["summary"]["usage"]["judge_requests"] == 8
    assert "judge_tokens" in written["summary"]["usage"]


def test_the_judge_cache_answers_a_rerun_and_repeats_really_repeat(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    body = """\
    conversations:
      - id: refund
        turns:
          - text: "I want a refund"
            expect: [{judge: {rubric: 'The agent offers a "refund".'}}]
    """
    suite = _suite(tmp_path, emulator, body, repeat=2)
    assert _run(suite, tmp_path, "--run-key", "c1") == 0
    assert emulator.count(route=MODEL_ROUTE) == 2  # one per repetition: a repeat asks again
    first = _results(tmp_path, "c1")
    assert {k: r.usage["judge_requests"] for k, r in first.items()} == {
        "refund#1": 1,
        "refund#2": 1,
    }

    assert _run(suite, tmp_path, "--run-key", "c2") == 0
    assert emulator.count(route=MODEL_ROUTE) == 2  # answered from the cache
    second = _results(tmp_path, "c2")
    assert all("judge_requests" not in r.usage for r in second.values())
    assert second["refund#1"].turns[0].judgements[0].cached

    assert _run(suite, tmp_path, "--run-key", "c3", "--no-judge-cache") == 0
    assert emulator.count(route=MODEL_ROUTE) == 4


def test_offline_similarity_needs_no_model_and_scores_paraphrases_lower(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    body = """\
    conversations:
      - id: track
        turns:
          - text: "Where is my package?"
            expect:
              - similar:
                  to: ["Orders arrive in 3 to 5 business days; give me your order number."]
                  threshold: 0.5
      - id: off-topic
        turns:
          - text: "Where is my package?"
            expect: [{similar: {to: ["The weather in Paris is sunny."], threshold: 0.5}}]
    """
    suite = _suite(tmp_path, emulator, body, judge_model=None)
    assert _run(suite, tmp_path, "--run-key", "s1") == 1
    results = _results(tmp_path, "s1")
    track, off = (
        results["track"].turns[0].judgements[0],
        results["off-topic"].turns[0].judgements[0],
    )
    assert track.passed
    assert not off.passed
    assert off.score is not None
    assert track.score is not None
    assert off.score < 0.5 < track.score
    assert emulator.count(route=MODEL_ROUTE) == 0  # nothing sent to a model nobody named


@pytest.mark.parametrize(
    ("body", "top", "named"),
    [
        (JUDGED, {"judge_model": None}, "judge, simulate need a model: add judge_model"),
        (
            """\
            conversations:
              - id: a
                turns: [{text: hi, expect: [{judge: {rubric: r, threshold: 1.5}}]}]
            """,
            {},
            "threshold must be a number from 0 to 1",
        ),
        (
            """\
            conversations:
              - id: a
                simulate: {persona: p, goal: g}
            """,
            {
                "provider": "liveavatar",
                "connection": "{base_url: http://127.0.0.1:9, api_key_env: JUDGED_AGENT_KEY}",
            },
            "liveavatar takes no text turns, so no simulated user can talk to it",
        ),
    ],
    ids=["no-model", "threshold", "simulated-avatar"],
)
def test_bad_judged_input_exits_2_before_any_request(
    emulator: EmulatorHandle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    body: str,
    top: dict[str, Any],
    named: str,
) -> None:
    suite = _suite(tmp_path, emulator, body, **top)
    assert _run(suite, tmp_path) == 2
    assert named in capsys.readouterr().err
    assert emulator.count("requests") == 0


def test_a_model_the_endpoint_does_not_serve_stops_the_run_before_the_agent_is_asked(
    emulator: EmulatorHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = f'{{base_url: "{emulator.url}/openai/v1", api_key_env: JUDGED_MODEL_KEY, model: gpt-9}}'
    suite = _suite(tmp_path, emulator, JUDGED, judge_model=model)
    assert _run(suite, tmp_path) == 2
    err = capsys.readouterr().err
    assert "model 'gpt-9'" in err
    assert "answers 404" in err
    assert emulator.count(route=AGENT_ROUTES) == 0
    assert "sk-judged-model-key" not in err


def test_validate_forecasts_judge_calls_and_tokens_against_the_budget(
    emulator: EmulatorHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = _suite(tmp_path, emulator, JUDGED)
    assert main(["validate", str(suite), "--estimate", "--budget-tokens", "1000"]) == 0
    said = capsys.readouterr().out
    # refund: a turn judge and a conversation judge; wrong-promise: one; lost-card: four user
    # turns, four goal checks and a conversation judge.
    assert "at most about 12 calls to the judge model" in said
    assert "judge tokens forecast against a cap of 1000 tokens: over it" in said
    assert emulator.count("requests") == 0


async def test_the_python_step_takes_rows_through_judged_and_simulated_conversations(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    from prefect_sessions.pipeline import aconverse_rows
    from prefect_sessions.vectara import VectaraCredentials

    rows = await aconverse_rows(
        [{"id": 1, "want": "a refund"}, {"id": 2, "want": "the weather"}],
        {
            "id": "row-{{ row.id }}",
            "connection": {"agent_key": "agt_acme_support"},
            "judge_model": {
                "base_url": f"{emulator.url}/openai/v1",
                "api_key_env": "JUDGED_MODEL_KEY",
                "model": "gpt-4o-mini",
            },
            "simulate": {
                "persona": "a customer",
                "goal": 'have a "refund request" opened',
                "opening": "I would like {{ row.want }}.",
                "facts": ["My order number is 12345."],
                "max_turns": 3,
            },
            "outputs": {"said": {"reply": "last"}, "stopped": {"stopped": True}},
        },
        VectaraCredentials(base_url=emulator.url, api_key=SecretStr("vectara-judged-key")),
        run_key="step-1",
        results_dir=str(tmp_path / "runs"),
    )
    first, second = rows
    assert (first.status, second.status) == ("passed", "failed")
    assert "opened a refund request" in first.outputs["said"]
    assert first.outputs["stopped"] == "goal met after 2 user turns"
    assert second.outputs["stopped"] == "the user said the stop marker"
    assert "the simulated user stopped after 2 turns without its goal met" in (second.reason or "")
