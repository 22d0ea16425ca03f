"""Batch conversations in a data pipeline: support tickets from PostgreSQL through a Vectara agent,
each one's draft reply and category written back.

Each night: read the tickets, ask the agent (whose answers are structured: a draft reply and a
category) about each, and upsert what it said into ``ticket_triage``, keyed by the ticket's id.
A run killed midway and run again with the same run key resumes: conversations already done
are not sent again, and the upsert leaves exactly one row per ticket, however often it runs.

The database comes through prefect-sqlalchemy's own block (``AsyncSqlAlchemyConnector``, with
the asyncpg driver Prefect already installs), the agent's key through a ``VectaraCredentials``
block. Save both once (``python -m blocks``, or in Python), then run::

    python examples/ticket_pipeline.py --run-key tickets-2026-12-07

See docs/guides/pipeline.md. ``tests/e2e/test_pipeline.py`` runs this file against the emulator and
a real PostgreSQL, kills it midway, resumes it and counts the rows.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from prefect import flow, get_run_logger
from prefect_sqlalchemy import AsyncSqlAlchemyConnector

from prefect_sessions.pipeline import aconverse_rows
from prefect_sessions.vectara import VectaraCredentials

#: What the agent is asked about each ticket, and what is kept of its answer.
SCRIPT: dict[str, Any] = {
    "name": "ticket-triage",
    "id": "ticket-{{ row.id }}",
    "turns": [{"text": "{{ row.subject }}: {{ row.body }}"}],
    "outputs": {
        "draft_reply": {"structured": "$.draft_reply"},
        "category": {"structured": "$.category"},
    },
}

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS ticket_triage (
    ticket_id integer PRIMARY KEY,
    draft_reply text,
    category text,
    status text NOT NULL,
    reason text,
    run_key text NOT NULL
)
"""

#: One row per ticket, however often the step runs: the latest answer wins.
UPSERT = """
INSERT INTO ticket_triage (ticket_id, draft_reply, category, status, reason, run_key)
VALUES (:ticket_id, :draft_reply, :category, :status, :reason, :run_key)
ON CONFLICT (ticket_id) DO UPDATE SET
    draft_reply = EXCLUDED.draft_reply,
    category = EXCLUDED.category,
    status = EXCLUDED.status,
    reason = EXCLUDED.reason,
    run_key = EXCLUDED.run_key
"""


@flow(name="ticket-pipeline")
async def ticket_pipeline(
    run_key: str,
    database: str = "tickets-db",
    agent: str = "support-agent",
    agent_key: str = "agt_triage",
    results_dir: str = ".prefect-sessions/runs",
    concurrency: int = 8,
) -> dict[str, int]:
    """Triage every ticket with the agent and write the answers back.

    Args:
        run_key: The night's run; the same key resumes it.
        database: The AsyncSqlAlchemyConnector block of the tickets' database.
        agent: The VectaraCredentials block of the agent's key.
        agent_key: The Vectara agent that triages (its output parser is structured).
        results_dir: Where the step keeps the rows, its suite and its results while it runs.
        concurrency: Conversations in flight at once.
    """
    logger = get_run_logger()
    credentials = await VectaraCredentials.aload(agent)
    async with await AsyncSqlAlchemyConnector.aload(database) as tickets_db:
        tickets = [
            dict(row._mapping)
            for row in await tickets_db.fetch_all("SELECT id, subject, body FROM tickets")
        ]
        logger.info("%d tickets to triage (run %s)", len(tickets), run_key)
        triaged = await aconverse_rows(
            tickets,
            {**SCRIPT, "connection": {"agent_key": agent_key}},
            credentials,
            run_key=run_key,
            results_dir=results_dir,
            concurrency=concurrency,
        )
        await tickets_db.execute(CREATE_TABLE)
        await tickets_db.execute_many(
            UPSERT,
            seq_of_parameters=[
                {
                    "ticket_id": row.row["id"],
                    "draft_reply": row.outputs["draft_reply"],
                    "category": row.outputs["category"],
                    "status": row.status,
                    "reason": row.reason,
                    "run_key": run_key,
                }
                for row in triaged
            ],
        )
    counts: dict[str, int] = {}
    for row in triaged:
        counts[row.status] = counts.get(row.status, 0) + 1
    logger.info("Wrote %d rows to ticket_triage: %s", len(triaged), counts)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-key", required=True)
    parser.add_argument("--database", default="tickets-db")
    parser.add_argument("--agent", default="support-agent")
    parser.add_argument("--agent-key", default="agt_triage")
    parser.add_argument("--results-dir", default=".prefect-sessions/runs")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(
        asyncio.run(
            ticket_pipeline(
                run_key=args.run_key,
                database=args.database,
                agent=args.agent,
                agent_key=args.agent_key,
                results_dir=args.results_dir,
                concurrency=args.concurrency,
            )
        )
    )


if __name__ == "__main__":
    main()
