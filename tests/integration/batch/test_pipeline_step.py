"""A batch as a pipeline step, against the emulator over real HTTP on the session's Prefect server:
named outputs, the output dataset (CSV, JSONL, Parquet), the Python step with rows in memory,
budgets, triggered outcome events with outputs, and the bad input each refuses before a request.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from prefect_sessions.cli import main
from prefect_sessions.conversation.results import ResultStore
from prefect_sessions.emulator import EmulatorHandle
from prefect_sessions.errors import ConfigurationError
from prefect_sessions.pipeline import aconverse_rows
from prefect_sessions.seam.turns import Turn
from prefect_sessions.vectara import VectaraCredentials
from prefect_sessions.voiceflow import VoiceflowCredentials

pytestmark = pytest.mark.usefixtures("prefect_server")

KEY = "vectara-pipeline-canary-key"
START = "POST /v4/project/{projectID}/environment/{environmentID}/session"
#: An agent whose answers are structured: a draft reply and a category (the emulator fills them
#: from its scripted turn).
TRIAGE = {
    "key": "agt_triage",
    "name": "Ticket triage",
    "model": {"name": "gpt-4o"},
    "tool_configurations": {},
    "first_step": {
        "type": "conversational",
        "instructions": [{"type": "inline", "template": "Triage the ticket."}],
        "output_parser": {
            "type": "structured",
            "json_schema": {
                "name": "triage",
                "schema": {
                    "type": "object",
                    "properties": {
                        "draft_reply": {"type": "string"},
                        "category": {"type": "string", "enum": ["refund", "tracking", "other"]},
                    },
                    "required": ["draft_reply", "category"],
                },
            },
        },
    },
}
TICKETS = [
    {"id": 1, "body": "I want my money back for order 1234", "customer": "ada"},
    {"id": 2, "body": "Where is my package?", "customer": "bob"},
    {"id": 3, "body": "Hello there", "customer": "cy"},
]
SCRIPT = {
    "name": "tickets",
    "id": "ticket-{{ row.id }}",
    "connection": {"agent_key": "agt_triage"},
    "turns": [{"text": "{{ row.body }}"}],
    "outputs": {
        "draft": {"reply": "last"},
        "category": {"structured": "$.category"},
        "order": {"regex": "order (\\d+)", "group": 1},
        "spent": {"usage": "requests"},
    },
}


@pytest.fixture
def triage(emulator: EmulatorHandle) -> VectaraCredentials:
    created = httpx.post(f"{emulator.url}/v2/agents", json=TRIAGE, headers={"x-api-key": KEY})
    assert created.status_code == 201, created.text
    return VectaraCredentials(base_url=emulator.url, api_key=SecretStr(KEY))


async def test_rows_in_memory_go_through_the_agent_and_come_back_as_typed_rows(
    triage: VectaraCredentials, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    out = tmp_path / "triaged.parquet"
    rows = await aconverse_rows(
        TICKETS,
        SCRIPT,
        triage,
        run_key="tickets-1",
        results_dir=str(tmp_path / "runs"),
        output_path=str(out),
    )
    assert [row.row["id"] for row in rows] == [1, 2, 3]  # the input's order
    assert [row.outputs["category"] for row in rows] == ["refund", "tracking", "refund"]
    first = rows[0]
    assert first.status == "passed"
    assert first.conversation == "ticket-1"
    assert "refund" in first.outputs["draft"]
    assert first.outputs["spent"] == 2  # a session and a message
    # A regex that matched nothing is None, with the reason, never a crash.
    assert rows[1].outputs["order"] is None
    assert rows[1].output_notes == "order: no reply matched 'order (\\\\d+)'"
    assert rows[0].outputs["order"] == "1234"  # the agent found the order in the ticket
    frame = rows.to_pandas()
    assert list(frame["category"]) == ["refund", "tracking", "refund"]
    assert list(frame.columns[:3]) == ["id", "body", "customer"]
    import pyarrow.parquet as pq

    assert pq.read_table(out).to_pylist() == rows.to_arrow().to_pylist()
    assert rows.summary.output_rows == 3
    # The same run key again: every conversation is already done, nothing is sent twice.
    sent = emulator.count("requests")
    again = await aconverse_rows(
        TICKETS, SCRIPT, triage, run_key="tickets-1", results_dir=str(tmp_path / "runs")
    )
    assert emulator.count("requests") == sent
    assert again.records() == rows.records()


async def test_a_dataframe_and_an_arrow_table_are_rows_too(
    triage: VectaraCredentials, tmp_path: Path
) -> None:
    import pandas
    import pyarrow

    frame = pandas.DataFrame(TICKETS[:2])
    from_frame = await aconverse_rows(
        frame, SCRIPT, triage, run_key="frame", results_dir=str(tmp_path)
    )
    table = pyarrow.Table.from_pylist(TICKETS[:2])
    from_table = await aconverse_rows(
        table, SCRIPT, triage, run_key="table", results_dir=str(tmp_path)
    )
    assert [r.outputs["category"] for r in from_frame] == ["refund", "tracking"]
    assert [r.flat()["category"] for r in from_table] == ["refund", "tracking"]


async def test_the_cli_writes_the_same_rows_as_the_python_step(
    triage: VectaraCredentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = await aconverse_rows(
        TICKETS, SCRIPT, triage, run_key="same", results_dir=str(tmp_path / "step")
    )
    (tmp_path / "tickets.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in TICKETS), encoding="utf-8"
    )
    suite = tmp_path / "tickets.yaml"
    suite.write_text(
        textwrap.dedent(
            f"""\
            name: tickets
            provider: vectara
            connection: {{base_url: "{triage.base_url}", api_key_env: PIPELINE_KEY,
                          agent_key: agt_triage}}
            outputs:
              draft: {{reply: last}}
              category: {{structured: "$.category"}}
              order: {{regex: "order (\\\\d+)", group: 1}}
              spent: {{usage: requests}}
            conversations:
              - id: "ticket-{{{{ row.id }}}}"
                dataset: tickets.jsonl
                turns: [{{text: "{{{{ row.body }}}}"}}]
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("PIPELINE_KEY", KEY)
    out = tmp_path / "cli.jsonl"
    code = await asyncio.to_thread(  # the CLI runs its own event loop, off the test's
        main,
        [
            "run",
            str(suite),
            "--output",
            str(out),
            "--results-dir",
            str(tmp_path / "cli"),
            "--progress",
            "none",
            "--baseline",
            "none",
        ],
    )
    assert code == 0
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written == step.records()


def _voiceflow_suite(folder: Path, url: str, body: str, rows: int = 12) -> Path:
    (folder / "users.csv").write_text(
        "user,name\n" + "".join(f"u{n},Name{n}\n" for n in range(rows)), encoding="utf-8"
    )
    path = folder / "suite.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: outputs
            provider: voiceflow
            connection: {{base_url: "{url}", api_key_env: PIPELINE_VF_KEY, project_id: demo}}
            concurrency: 2
            """
        )
        + textwrap.dedent(body),
        encoding="utf-8",
    )
    return path


REFUNDS = """\
outputs:
  answer: {reply: last}
  topic: {variable: topic}
  verdict: {status: true}
conversations:
  - id: "refund-{{ row.user }}"
    dataset: users.csv
    turns:
      - launch: {}
      - button: "Request a refund"
"""


@pytest.fixture
def voiceflow_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_VF_KEY", "VF.DM.pipeline-key")


@pytest.mark.usefixtures("voiceflow_key")
def test_a_budget_stops_the_run_before_it_is_crossed_and_a_resume_goes_on(
    emulator: EmulatorHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = _voiceflow_suite(tmp_path, emulator.url, REFUNDS)
    out = tmp_path / "rows.csv"
    common = ["--results-dir", str(tmp_path / "runs"), "--progress", "none", "--run-key", "b1"]
    # Each conversation costs 4 requests: start, two turns, the variables read for `topic`.
    code = main(["run", str(suite), "--budget-requests", "18", "--output", str(out), *common])
    said = capsys.readouterr().err
    assert code == 3
    assert "the budget of 18 requests would be crossed" in said
    assert "raise the budget to go on" in said
    assert "resume" in said
    assert emulator.count("requests") <= 18
    done = ResultStore(tmp_path / "runs" / "outputs" / "b1.jsonl").finished()
    assert 2 <= len(done) < 12
    with out.open(encoding="utf-8") as handle:  # what finished is handed on all the same
        assert len(list(csv.DictReader(handle))) == len(done)
    code = main(["run", str(suite), "--budget-requests", "1000", "--output", str(out), *common])
    assert code == 0
    assert emulator.count("requests", route=START) == 12  # no conversation ran twice
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["user"] for row in rows] == [f"u{n}" for n in range(12)]
    assert {row["topic"] for row in rows} == {"refund"}
    assert {row["verdict"] for row in rows} == {"passed"}
    assert rows[0]["answer"].startswith("I'm sorry about that")


@pytest.mark.usefixtures("voiceflow_key")
def test_validate_estimates_against_the_budget(
    emulator: EmulatorHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = _voiceflow_suite(tmp_path, emulator.url, REFUNDS)
    assert main(["validate", str(suite), "--estimate", "--budget-requests", "40"]) == 0
    said = capsys.readouterr().out
    assert "about 48 requests" in said  # 12 conversations of 4
    assert "48 requests forecast against a cap of 40: over it" in said


@pytest.mark.usefixtures("voiceflow_key")
@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            REFUNDS.replace("topic: {variable: topic}", "name: {variable: topic}"),
            "output 'name' clashes with the input column 'name' of users.csv: rename the output",
        ),
        (
            REFUNDS.replace("answer: {reply: last}", 'answer: {regex: "order", group: 1}'),
            "has no group 1 (it has 0): add the group to the pattern",
        ),
        (
            REFUNDS.replace("answer: {reply: last}", 'answer: {structured: "$.category"}'),
            "outputs.answer: voiceflow has no 'structured' to take an output from",
        ),
        (
            REFUNDS.replace("verdict: {status: true}", "status: {status: true}"),
            "output 'status' clashes with a column every output row has",
        ),
    ],
    ids=["column clash", "regex without its group", "structured on Voiceflow", "reserved name"],
)
def test_bad_outputs_are_refused_before_any_request(
    emulator: EmulatorHandle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    body: str,
    named: str,
) -> None:
    suite = _voiceflow_suite(tmp_path, emulator.url, body)
    assert main(["run", str(suite), "--results-dir", str(tmp_path), "--progress", "none"]) == 2
    said = capsys.readouterr().err
    assert named in said, said
    assert str(suite) in said  # the file is named
    assert emulator.count("requests") == 0


@pytest.mark.usefixtures("voiceflow_key")
def test_an_output_that_cannot_be_written_is_refused_before_any_request(
    emulator: EmulatorHandle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    suite = _voiceflow_suite(tmp_path, emulator.url, REFUNDS)
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    run = ["run", str(suite), "--results-dir", str(tmp_path), "--progress", "none", "--output"]
    assert main([*run, str(blocker / "rows.csv")]) == 2
    assert f"the folder {blocker} cannot be made" in capsys.readouterr().err
    assert main([*run, str(tmp_path / "rows.xlsx")]) == 2
    assert "write a .csv, .jsonl or .parquet file" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if the extra were not installed
    assert main([*run, str(tmp_path / "rows.parquet")]) == 2
    assert "pip install 'prefect-sessions[parquet]'" in capsys.readouterr().err
    assert emulator.count("requests") == 0


async def test_duplicate_ids_in_rows_are_refused_before_any_request(
    triage: VectaraCredentials, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    import pandas

    frame = pandas.DataFrame([*TICKETS, {"id": 2, "body": "again", "customer": "dee"}])
    sent = emulator.count("requests")
    with pytest.raises(ConfigurationError, match=r"id '2' appears twice \(rows 1 and 3\)"):
        await aconverse_rows(frame, SCRIPT, triage, results_dir=str(tmp_path))
    clashing = [{**row, "category": "x"} for row in TICKETS]
    with pytest.raises(ConfigurationError, match="column 'category' clashes with an output"):
        await aconverse_rows(clashing, SCRIPT, triage, results_dir=str(tmp_path))
    assert emulator.count("requests") == sent


async def test_a_triggered_outcome_event_carries_the_outputs(
    emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_sessions.conversation.outputs import Output
    from prefect_sessions.flows import triggered_conversation

    events: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "prefect_sessions.conversation.triggered.emit_event", lambda **kw: events.append(kw)
    )
    credentials = VoiceflowCredentials(
        api_key=SecretStr("VF.DM.triggered"), project_id="demo-project", base_url=emulator.url
    )
    await triggered_conversation(
        user_id="cust-7",
        turns=[Turn.model_validate(t) for t in ({"launch": {}}, {"text": "I need a refund"})],
        credentials=credentials,
        outputs={
            "topic": Output.model_validate({"variable": "topic"}),
            "answer": Output.model_validate({"reply": "last"}),
        },
    )
    [event] = events
    assert event["payload"]["outputs"]["topic"] == "refund"
    assert "refund" in event["payload"]["outputs"]["answer"]
