"""Secrets kept: a full run with canary values for every key, session key and token, then a search
of everything written for them.

The run covers the three providers, saved blocks, a key from the environment, the CLI (report,
JUnit, terminal output), the batch flow with failures and retries, the triggered conversation
(with a failing expectation and its emitted event) and session maintenance (stops and deletes).
Then it searches the Prefect server's database files, its logs, artifacts, flow and task runs
(parameters and state messages) through the API, the results, reports and JUnit files, Prefect's
local result storage, and the captured terminal output and log records. Expected: no canary
anywhere, and flow-run parameters that hold block references with masked secrets.
"""

from __future__ import annotations

import json
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.flows import load_flow_from_entrypoint
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_LOCAL_STORAGE_PATH

from prefect_sessions.cli import main
from prefect_sessions.emulator import EmulatorConfig
from prefect_sessions.emulator.providers import liveavatar as liveavatar_routes
from prefect_sessions.emulator.providers import voiceflow as voiceflow_routes
from prefect_sessions.emulator.server import run_emulator
from prefect_sessions.flows import batch_conversations
from prefect_sessions.liveavatar import AvatarPersona, FullSessionConfig, LiveAvatarCredentials
from prefect_sessions.liveavatar.adapter import SANDBOX_AVATAR_ID
from prefect_sessions.seam.turns import Turn
from prefect_sessions.vectara import VectaraCredentials
from prefect_sessions.vectara.maintenance import VectaraPolicy
from prefect_sessions.voiceflow import VoiceflowCredentials

pytestmark = pytest.mark.usefixtures("prefect_server")

CANARY = "CANARY7f3e9"
VOICEFLOW_KEY = f"VF.DM.{CANARY}-voiceflow-api-key"
VECTARA_KEY = f"zut_{CANARY}-vectara-api-key"
LIVEAVATAR_KEY = f"{CANARY}-liveavatar-api-key"


@pytest.fixture
def canary_tokens(monkeypatch):
    """The emulator hands out session keys and session tokens that carry the canary too."""
    issued = {"voiceflow": 0, "liveavatar": 0}
    session_key, jwt = voiceflow_routes._session_key, liveavatar_routes._jwt

    def voiceflow_key(project_id: str, user_id: str) -> str:
        issued["voiceflow"] += 1
        return f"{session_key(project_id, user_id)}{CANARY}vfsession"

    def liveavatar_token(claims: dict[str, Any]) -> str:
        issued["liveavatar"] += 1
        return f"{jwt(claims)}{CANARY}latoken"

    monkeypatch.setattr(voiceflow_routes, "_session_key", voiceflow_key)
    monkeypatch.setattr(liveavatar_routes, "_jwt", liveavatar_token)
    return issued


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


async def test_no_canary_is_written_anywhere(tmp_path, monkeypatch, capfd, caplog, canary_tokens):
    started = time.time()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("CANARY_VECTARA_KEY", VECTARA_KEY)
    monkeypatch.setenv("CANARY_LIVEAVATAR_KEY", LIVEAVATAR_KEY)
    config = EmulatorConfig(limits={"voiceflow": None, "vectara": None, "liveavatar": None})
    with run_emulator(config) as emulator:
        url = emulator.url
        await VoiceflowCredentials(
            api_key=VOICEFLOW_KEY, project_id="demo", base_url=url, timeout_seconds=2
        ).save("canary-voiceflow", overwrite=True)
        await VectaraCredentials(api_key=VECTARA_KEY, base_url=url).save(
            "canary-vectara", overwrite=True
        )
        await LiveAvatarCredentials(api_key=LIVEAVATAR_KEY, base_url=url).save(
            "canary-liveavatar", overwrite=True
        )
        (work / "rows.csv").write_text(
            "user\n" + "".join(f"u{i}\n" for i in range(6)), encoding="utf-8"
        )
        voiceflow_suite = write(
            work / "voiceflow.yaml",
            """\
            name: canary-voiceflow
            provider: voiceflow
            credentials: canary-voiceflow
            concurrency: 2
            conversations:
              - id: "vf-{{ row.user }}"
                dataset: rows.csv
                turns:
                  - launch: {}
                    expect: [{contains: Welcome}]
                  - button: "Request a refund"
                    expect: [{variable: {name: topic, equals: refund}}]
                  - text: "I need a refund"
                    expect: [{contains: refund}]
              - id: vf-fails
                turns:
                  - launch: {}
                    expect: [{contains: "a phrase the agent never says"}]
            """,
        )
        vectara_suite = write(
            work / "vectara.yaml",
            f"""\
            name: canary-vectara
            provider: vectara
            connection: {{base_url: "{url}", api_key_env: CANARY_VECTARA_KEY,
                          agent_key: agt_acme_support}}
            conversations:
              - id: "vc-{{{{ row.user }}}}"
                dataset: rows.csv
                turns:
                  - text: "I need a refund"
                    expect: [{{contains: refund}}]
            """,
        )
        liveavatar_suite = write(
            work / "liveavatar.yaml",
            f"""\
            name: canary-liveavatar
            provider: liveavatar
            connection: {{base_url: "{url}", api_key_env: CANARY_LIVEAVATAR_KEY}}
            conversations:
              - id: "la-{{{{ row.user }}}}"
                dataset: rows.csv
                turns: [{{launch: {{}}}}, {{no_reply: {{}}}}]
            """,
        )

        # Failures and retries: resets (restarts), 503s (retries), an unreadable answer and a
        # revoked key.
        emulator.queue_fault("error", count=2, route="/v4/interact")
        emulator.queue_fault("reset", count=2, route="/v4/interact")
        emulator.queue_fault("malformed", count=1, route="/v4/interact")
        emulator.queue_fault("reset", count=1, route="/v1/agents")
        emulator.queue_fault("error", count=1, route="/v1/sessions")
        common = ["--results-dir", str(work), "--progress", "lines"]
        import asyncio

        assert (
            await asyncio.to_thread(
                main,
                [
                    "run",
                    str(voiceflow_suite),
                    "--report",
                    str(work / "report.json"),
                    "--junit",
                    str(work / "junit.xml"),
                    *common,
                ],
            )
            == 1  # vf-fails fails on purpose
        )
        assert await asyncio.to_thread(main, ["run", str(vectara_suite), *common]) in (0, 1)
        assert await asyncio.to_thread(main, ["run", str(liveavatar_suite), *common]) in (0, 1)

        # The flow given saved blocks as parameters.
        for suite, kind, name in (
            (voiceflow_suite, VoiceflowCredentials, "canary-voiceflow"),
            (vectara_suite, VectaraCredentials, "canary-vectara"),
            (liveavatar_suite, LiveAvatarCredentials, "canary-liveavatar"),
        ):
            block = await kind.aload(name)
            state = await batch_conversations(
                suite_path=str(suite),
                credentials=block,
                results_dir=str(work),
                return_state=True,
            )
            summary = await state.aresult(raise_on_failure=False)
            assert summary.passed > 0
        # The triggered conversation (session keys, a failing expectation, an emitted event) and
        # session maintenance (stops, deletes, transcript export) with the same canary blocks.
        flows = Path(__file__).resolve().parents[3] / "flows"
        triggered = load_flow_from_entrypoint(
            f"{flows / 'triggered_conversation.py'}:triggered_conversation"
        )
        maintenance = load_flow_from_entrypoint(
            f"{flows / 'session_maintenance.py'}:session_maintenance"
        )
        state = await triggered(
            user_id="canary-ticket-1",
            turns=[
                Turn.model_validate({"launch": {}}),
                Turn.model_validate(
                    {"text": "I need a refund", "expect": [{"contains": "store credit"}]}
                ),
            ],
            credentials=await VoiceflowCredentials.aload("canary-voiceflow"),
            variables={"ticket": "T-1"},
            return_state=True,
        )
        assert state.is_failed()  # the failing expectation fails the run after its event
        liveavatar = await LiveAvatarCredentials.aload("canary-liveavatar")
        vectara = await VectaraCredentials.aload("canary-vectara")
        async with liveavatar.get_client() as client:
            sandbox = FullSessionConfig(
                avatar_id=SANDBOX_AVATAR_ID, avatar_persona=AvatarPersona(), is_sandbox=True
            )
            await client.start_session(await client.create_session_token(sandbox))
        async with vectara.get_client() as client:
            await client.create_session("agt_acme_support", name="left-behind")
        state = await maintenance(
            liveavatar_credentials=liveavatar,
            vectara_credentials=vectara,
            vectara=VectaraPolicy(
                delete_idle=True, agent_keys=["agt_acme_support"], max_idle_hours=1
            ),
            dry_run=False,
            as_of=datetime.now(timezone.utc) + timedelta(days=30),
            return_state=True,
        )
        report = await state.aresult()
        assert report.of("stop", "done")
        assert report.of("delete", "done")

        assert emulator.count("faults") >= 5
        assert canary_tokens["voiceflow"] > 0
        assert canary_tokens["liveavatar"] > 0

    await APILogHandler.aflush()
    haystacks: dict[str, bytes] = {}

    # The Prefect server's database files (block documents are encrypted at rest).
    database = Path(str(PREFECT_API_DATABASE_CONNECTION_URL.value()).split("///", 1)[1])
    for file in database.parent.glob(database.name + "*"):
        haystacks[f"db:{file.name}"] = file.read_bytes()
    # What the API serves: logs, artifacts, flow and task runs with parameters and states.
    async with get_client() as client:
        logs, offset = [], 0
        while page := await client.read_logs(offset=offset, limit=200):
            logs.extend(page)
            offset += len(page)
        haystacks["api:logs"] = "\n".join(log.message for log in logs).encode()
        artifacts = await client.read_artifacts()
        haystacks["api:artifacts"] = json.dumps([str(a.data) for a in artifacts]).encode()
        # Every flow and task run on the shared server, page by page (a page is capped at 200).
        flow_runs, offset = [], 0
        while page := await client.read_flow_runs(offset=offset, limit=200):
            flow_runs.extend(page)
            offset += len(page)
        haystacks["api:flow-runs"] = "\n".join(r.model_dump_json() for r in flow_runs).encode()
        task_runs, offset = [], 0
        while page := await client.read_task_runs(offset=offset, limit=200):
            task_runs.extend(page)
            offset += len(page)
        haystacks["api:task-runs"] = "\n".join(r.model_dump_json() for r in task_runs).encode()
    # Results, reports, JUnit; Prefect's result storage written during the test.
    for file in work.rglob("*"):
        if file.is_file():
            haystacks[f"file:{file.name}"] = file.read_bytes()
    storage = Path(str(PREFECT_LOCAL_STORAGE_PATH.value()))
    if storage.exists():
        for file in storage.rglob("*"):
            if file.is_file() and file.stat().st_mtime >= started:
                haystacks[f"storage:{file.name}"] = file.read_bytes()
    captured = capfd.readouterr()
    haystacks["terminal"] = (captured.out + captured.err).encode()
    haystacks["log records"] = caplog.text.encode()

    found = sorted(name for name, data in haystacks.items() if CANARY.encode() in data)
    searched = sum(len(data) for data in haystacks.values())
    print(
        f"FIGURES secrets: {len(haystacks)} places, {searched} bytes searched, "
        f"{len(found)} with a canary; {canary_tokens} canary session keys/tokens issued"
    )
    assert found == []
    # The search is not vacuous: the runs, logs and reports are there.
    assert len(logs) > 0
    assert len(artifacts) > 0
    assert b"vf-fails" in haystacks["file:junit.xml"]
    assert b"failed vf-fails" in haystacks["terminal"]

    # Flow-run parameters hold block references with masked secrets, never values.
    given = [r for r in flow_runs if r.parameters.get("credentials")]
    for run in given:  # any run of the session: secrets masked even in an unsaved block
        assert run.parameters["credentials"].get("api_key") in (None, "**********")
    ours = [r for r in given if str(work) in str(r.parameters.get("suite_path"))]
    assert len(ours) == 3
    for run in ours:
        reference = run.parameters["credentials"]
        assert reference.get("_block_document_id"), reference
        assert str(reference.get("_block_document_name")).startswith("canary-")
