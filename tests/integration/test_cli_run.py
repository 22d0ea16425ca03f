"""``prefect-sessions run`` end to end: real HTTP to the emulator, a real Prefect server."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.settings import PREFECT_API_URL

from prefect_sessions.cli import main
from prefect_sessions.conversation.results import ResultStore
from tests.support.killed_run import kill_after_verdicts

pytestmark = pytest.mark.usefixtures("prefect_server")

START = "POST /v4/project/{projectID}/environment/{environmentID}/session"


def suite_file(tmp_path: Path, url: str, body: str, name: str = "suite") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            provider: voiceflow
            connection: {{base_url: "{url}", api_key_env: CLI_TEST_KEY, project_id: demo}}
            concurrency: 4
            """
        )
        + textwrap.dedent(body),
        encoding="utf-8",
    )
    return path


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("CLI_TEST_KEY", "VF.DM.cli-test")


def test_an_invalid_suite_exits_2_and_sends_nothing(tmp_path, emulator, capsys):
    suite = suite_file(
        tmp_path, emulator.url, "conversations: [{id: a, turns: [{txt: hi}]}]\n", name="broken"
    )
    assert main(["run", str(suite), "--results-dir", str(tmp_path)]) == 2
    assert "unknown turn kind 'txt'" in capsys.readouterr().err
    assert main(["validate", str(suite)]) == 2
    assert emulator.count("requests") == 0


def test_a_missing_key_exits_2(tmp_path, emulator, monkeypatch, capsys):
    monkeypatch.delenv("CLI_TEST_KEY")
    suite = suite_file(tmp_path, emulator.url, "conversations: [{id: a, turns: [launch: {}]}]\n")
    assert main(["run", str(suite), "--results-dir", str(tmp_path)]) == 2
    assert "CLI_TEST_KEY is not set" in capsys.readouterr().err
    assert emulator.count("requests") == 0


async def test_failing_expectations_exit_1_and_are_reported_everywhere(tmp_path, emulator):
    suite = suite_file(
        tmp_path,
        emulator.url,
        """\
        conversations:
          - id: passes
            turns:
              - launch: {}
                expect: [{contains: Welcome}]
          - id: fails
            turns:
              - launch: {}
              - text: "I need a refund"
                expect: [{contains: "store credit"}]
              - text: "never sent"
        """,
        name="mixed",
    )
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    code = await _run_in_thread(
        [
            "run",
            str(suite),
            "--report",
            str(report),
            "--junit",
            str(junit),
            "--results-dir",
            str(tmp_path),
            "--progress",
            "none",
        ]
    )
    assert code == 1
    data = json.loads(report.read_text())
    summary = data["summary"]
    assert {k: summary[k] for k in ("conversations", "passed", "failed", "errored")} == {
        "conversations": 2,
        "passed": 1,
        "failed": 1,
        "errored": 0,
    }
    assert summary["requests"] > 0
    assert summary["rate_limited"] == 0
    assert summary["duration_s"] > 0
    failed = next(c for c in data["conversations"] if c["id"] == "fails")
    assert "expected the answer to contain 'store credit'" in failed["reason"]
    assert len(failed["turns"]) == 2  # stopped at the failing turn: the third was never sent
    cases = ElementTree.parse(junit).getroot().find("testsuite")
    assert cases.get("failures") == "1"
    assert cases.find("testcase[@name='fails']/failure") is not None
    async with get_client() as client:
        # Filtered by key: the session's server holds every other test's artifacts too.
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="mixed-"))
        )
    keys = {a.key for a in found}
    assert {"mixed-summary", "mixed-report", "mixed-progress"} <= keys
    report_md = next(a for a in found if a.key == "mixed-report")
    assert "store credit" in str(report_md.data)
    assert "I need a refund" in str(report_md.data)


async def _run_in_thread(argv: list[str]) -> int:
    # The CLI runs its own event loop; keep it off the test's loop.
    import asyncio

    return await asyncio.to_thread(main, argv)


def test_a_killed_run_resumes_without_running_a_finished_conversation_twice(tmp_path, emulator):
    rows = tmp_path / "rows.csv"
    rows.write_text("user\n" + "\n".join(f"u{i:03d}" for i in range(40)) + "\n", encoding="utf-8")
    suite = suite_file(
        tmp_path,
        emulator.url,
        """\
        conversations:
          - id: "c-{{ row.user }}"
            dataset: rows.csv
            turns:
              - launch: {}
                expect: [{contains: Welcome}]
              - text: "I need a refund"
                expect: [{contains: refund}]
        """,
        name="resumable",
    )
    emulator.set_latency(25)  # long enough that the kill lands mid-run
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    command = [
        sys.executable,
        "-m",
        "prefect_sessions.cli",
        "run",
        str(suite),
        "--run-key",
        "night-1",
        "--results-dir",
        str(tmp_path),
        "--progress",
        "lines",
        "--concurrency",
        "4",
    ]
    finished_before = kill_after_verdicts(command, env, 10)
    assert 10 <= len(finished_before) < 40

    store = ResultStore(tmp_path / "resumable" / "night-1.jsonl")
    finished_at_kill = set(store.finished())
    assert set(finished_before) <= finished_at_kill
    starts_before = emulator.count("requests", route=START)

    emulator.set_latency(0)
    assert main([*command[3:]]) == 0

    verdicts: dict[str, int] = {}
    for result in store:
        verdicts[result.id] = verdicts.get(result.id, 0) + 1
    assert len(verdicts) == 40
    assert all(verdicts[c] == 1 for c in finished_before)  # never run twice
    # Only the conversations without a verdict at the kill (unstarted or in flight) ran again.
    resumed_starts = emulator.count("requests", route=START) - starts_before
    assert resumed_starts == 40 - len(finished_at_kill)


PROVIDER_SUITES = {
    "voiceflow": (
        "connection: {base_url: URL, api_key_env: CLI_TEST_KEY, project_id: demo}",
        "[{launch: {}, expect: [{contains: Welcome}]},"
        " {text: 'I need a refund', expect: [{regex: 'order (number|id)'}]}]",
    ),
    "vectara": (
        "connection: {base_url: URL, api_key_env: CLI_TEST_KEY, agent_key: agt_acme_support}",
        "[{text: 'I need a refund', expect: [{contains: refund}]}]",
    ),
    "liveavatar": (
        "connection: {base_url: URL, api_key_env: CLI_TEST_KEY, is_sandbox: true}",
        "[{launch: {}, expect: [{contains: Welcome}]}, {no_reply: {}}]",
    ),
}


@pytest.mark.parametrize("provider", sorted(PROVIDER_SUITES))
async def test_the_cli_contract_holds_for_every_provider(tmp_path, emulator, provider):
    connection, turns = PROVIDER_SUITES[provider]
    suite = tmp_path / f"{provider}.yaml"
    suite.write_text(
        f"name: {provider}-contract\nprovider: {provider}\n"
        + connection.replace("URL", emulator.url)
        + f"\nconversations:\n  - id: ok-1\n    turns: {turns}\n  - id: ok-2\n    turns: {turns}\n",
        encoding="utf-8",
    )
    report = tmp_path / "report.json"
    argv = ["run", str(suite), "--report", str(report), "--results-dir", str(tmp_path)]
    assert await _run_in_thread([*argv, "--progress", "none"]) == 0
    summary = json.loads(report.read_text())["summary"]
    assert (summary["provider"], summary["passed"], summary["conversations"]) == (provider, 2, 2)
    assert summary["requests"] >= 2
    assert emulator.count("requests") >= summary["requests"]

    # A provider that refuses the key is an invalid credential, exit 2, not a failed suite.
    emulator.reset()
    emulator.state.settings.api_keys = frozenset({"the-only-key"})  # strict from now on
    assert await _run_in_thread([*argv, "--progress", "none", "--run-key", "refused"]) == 2
