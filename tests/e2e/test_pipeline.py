"""The PostgreSQL pipeline of ``examples/ticket_pipeline.py``, end to end on the e2e stack's Prefect
server: tickets read from a real PostgreSQL through prefect-sqlalchemy's block, triaged by the
emulator's Vectara agent with structured output, written back as an upsert. Killed midway and
resumed, then run again: exactly one row per ticket, each with its agent's answer, and no
conversation sent twice.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from tests.e2e.conftest import OUTPUT, ROOT, Stack, _postgres

KEY = "vectara-pipeline-e2e-key"
SESSIONS = "POST /v2/agents/{agent_key}/sessions"
TICKETS = 40
ASKED = {
    "refund": "I want my money back",
    "tracking": "Where is my package?",
    "other": "Hello there",
}
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
                        "category": {"type": "string", "enum": ["other", "refund", "tracking"]},
                    },
                },
            },
        },
    },
}


def _expected(number: int) -> str:
    return list(ASKED)[number % len(ASKED)]


@pytest.fixture
def tickets_database() -> Iterator[str]:
    name = f"tickets_{uuid.uuid4().hex[:10]}"
    asyncio.run(_postgres(f'CREATE DATABASE "{name}"'))

    async def fill() -> None:
        import asyncpg

        connection = await asyncpg.connect(host="127.0.0.1", user="postgres", database=name)
        try:
            await connection.execute(
                "CREATE TABLE tickets (id integer PRIMARY KEY, subject text, body text)"
            )
            await connection.executemany(
                "INSERT INTO tickets VALUES ($1, $2, $3)",
                [(n, f"Ticket {n}", ASKED[_expected(n)]) for n in range(1, TICKETS + 1)],
            )
        finally:
            await connection.close()

    asyncio.run(fill())
    try:
        yield name
    finally:
        asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _triage_rows(database: str) -> list[tuple[int, str, str, str]]:
    import asyncpg

    connection = await asyncpg.connect(host="127.0.0.1", user="postgres", database=database)
    try:
        rows = await connection.fetch(
            "SELECT ticket_id, category, status, draft_reply FROM ticket_triage ORDER BY ticket_id"
        )
    finally:
        await connection.close()
    return [(r["ticket_id"], r["category"], r["status"], r["draft_reply"]) for r in rows]


def _blocks(stack: Stack, database: str, suffix: str) -> tuple[str, str]:
    from prefect_sqlalchemy import AsyncDriver, AsyncSqlAlchemyConnector, ConnectionComponents

    from prefect_sessions.vectara import VectaraCredentials

    database_block, agent_block = f"tickets-{suffix}", f"support-agent-{suffix}"
    AsyncSqlAlchemyConnector(
        connection_info=ConnectionComponents(
            driver=AsyncDriver.POSTGRESQL_ASYNCPG,
            username="postgres",
            host="127.0.0.1",
            port=5432,
            database=database,
        )
    ).save(database_block, overwrite=True)
    VectaraCredentials(base_url=stack.emulator.url, api_key=SecretStr(KEY)).save(
        agent_block, overwrite=True
    )
    return database_block, agent_block


def test_the_postgresql_pipeline_survives_a_kill_and_leaves_one_row_per_ticket(
    stack: Stack, tickets_database: str, tmp_path: Path
) -> None:
    stack.emulator.reset()
    created = httpx.post(f"{stack.emulator.url}/v2/agents", json=TRIAGE, headers={"x-api-key": KEY})
    assert created.status_code == 201, created.text
    stack.emulator.state.vectara.answer_seconds = 0.15  # slow enough to be killed midway
    suffix = uuid.uuid4().hex[:8]
    database_block, agent_block = _blocks(stack, tickets_database, suffix)
    results = tmp_path / "runs"
    command = [
        sys.executable,
        str(ROOT / "examples" / "ticket_pipeline.py"),
        "--run-key",
        "night-1",
        "--database",
        database_block,
        "--agent",
        agent_block,
        "--results-dir",
        str(results),
        "--concurrency",
        "4",
    ]
    log = (OUTPUT / "pipeline.log").open("ab")
    try:
        first = subprocess.Popen(command, cwd=ROOT, env=stack.env, stdout=log, stderr=log)
        spool = results / "ticket-triage" / "night-1.jsonl"
        deadline = time.monotonic() + 300
        while not (spool.exists() and len(spool.read_bytes().splitlines()) >= 10):
            assert first.poll() is None, "the pipeline ended before it could be killed"
            assert time.monotonic() < deadline, "no conversation finished in 300 s"
            time.sleep(0.05)  # another process's progress: nothing to await
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        done_before = len(spool.read_bytes().splitlines())
        started_before = stack.emulator.count("requests", route=SESSIONS)
        assert 10 <= done_before < TICKETS
        assert asyncio.run(_table_exists(tickets_database)) is False  # killed before writing
        stack.emulator.state.vectara.answer_seconds = 0.0
        for _ in range(2):  # the resume, then the whole night again: the same rows
            subprocess.run(
                command, cwd=ROOT, env=stack.env, stdout=log, stderr=log, timeout=600, check=True
            )
    finally:
        log.close()
    rows = asyncio.run(_triage_rows(tickets_database))
    assert [ticket for ticket, *_ in rows] == list(range(1, TICKETS + 1))
    assert [category for _, category, _, _ in rows] == [_expected(n) for n in range(1, TICKETS + 1)]
    assert {status for _, _, status, _ in rows} == {"passed"}
    assert all(draft for *_, draft in rows)
    # A conversation with a verdict is never sent again: the resume started only those without
    # one (the ones in flight at the kill lost theirs), and the second run started none.
    assert stack.emulator.count("requests", route=SESSIONS) == started_before + (
        TICKETS - done_before
    )


async def _table_exists(database: str) -> bool:
    import asyncpg

    connection = await asyncpg.connect(host="127.0.0.1", user="postgres", database=database)
    try:
        found = await connection.fetchval("SELECT to_regclass('ticket_triage') IS NOT NULL")
    finally:
        await connection.close()
    return bool(found)
