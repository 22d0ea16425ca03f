"""Benchmark 2, orchestration overhead: the batch flow's conversations/s over a bare loop's.

No rate limit, emulator latency 20 ms. At the same concurrency, against the same emulator:

- ``bare asyncio+httpx``: the same requests per conversation from one ``httpx.AsyncClient``,
  nothing checked or kept (``benchmarks.baselines.bare_loop``);
- ``engine + runner``: ``run_conversations`` with the Voiceflow adapter, no Prefect;
- ``batch flow``: the ``batch-conversations`` Prefect flow (chunks as task runs, results file,
  artifacts), timed around the call;
- ``bare, httpcore2's pool``: the bare loop on the connection pool ``prefect_sessions`` uses
  (``prefect_sessions.http.pool``), shown to tell the engine's own cost apart from the pool's;
  the goal is judged against the bare loop on httpx's own pool.

Run: ``python -m benchmarks.overhead``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.baselines import bare_loop
from benchmarks.common import (
    REQUESTS_PER_CONVERSATION,
    emit,
    emulator_process,
    goal,
    now,
    write_suite,
)
from benchmarks.flowrun import prefect_server, run_flow
from prefect_sessions.batch.chunks import connection_settings
from prefect_sessions.conversation.dataset import iter_conversations
from prefect_sessions.conversation.results import ResultStore
from prefect_sessions.conversation.runner import run_conversations
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.http import reset_shared_pacers
from prefect_sessions.http.tally import tallying
from prefect_sessions.run_options import RunOptions
from prefect_sessions.voiceflow.adapter import VoiceflowAdapter

COLUMNS = (
    "client",
    "conversations",
    "requests",
    "seconds",
    "conversations_per_s",
    "ratio_to_bare",
    "round_ratios",
    "client_cpu_ms_per_conversation",
)


async def _engine(suite_path: Path, url: str, concurrency: int, store: Path) -> int:
    loaded = load_suite(suite_path)
    reset_shared_pacers()
    options = RunOptions.of(suite_path=str(suite_path), base_url=url)
    with tallying() as sent:
        async with VoiceflowAdapter(connection_settings(loaded.suite, options)) as adapter:
            await run_conversations(
                adapter,
                iter_conversations(loaded),
                concurrency=concurrency,
                store=ResultStore(store),
            )
    return sent.requests


def run(
    conversations: int = 1000,
    concurrency: int = 16,
    latency_ms: float = 20.0,
    *,
    rounds: int = 3,
    own_server: bool = True,
) -> dict[str, Any]:
    """Measure the four clients in ``rounds`` interleaved rounds (the order rotates each round, so
    a busy neighbour on the machine slows every client alike); the report."""
    clients = (
        "bare asyncio+httpx",
        "engine + runner (no Prefect)",
        "batch flow (Prefect)",
        "bare, httpcore2's pool",
    )
    seconds = dict.fromkeys(clients, 0.0)
    per_round: list[dict[str, float]] = [{} for _ in range(rounds)]
    cpu = dict.fromkeys(clients, 0.0)
    sent = dict.fromkeys(clients, 0)
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulator_process(voiceflow_limit="off", latency_ms=latency_ms) as emulator,
        prefect_server(own_server),
    ):
        work = Path(tmp)
        suite_path = write_suite(
            work, conversations, base_url=emulator.url, concurrency=concurrency
        )

        def measure(client: str, number: int) -> None:
            emulator.reset()
            reset_shared_pacers()
            started, cpu_started = now(), time.process_time()
            if client == clients[0]:
                asyncio.run(bare_loop(emulator.url, conversations, concurrency))
            elif client == clients[3]:
                pooled = bare_loop(emulator.url, conversations, concurrency, httpcore2_pool=True)
                asyncio.run(pooled)
            elif client == clients[1]:
                store = work / f"engine-{number}.jsonl"
                asyncio.run(_engine(suite_path, emulator.url, concurrency, store))
            else:
                _, summary = run_flow(suite_path, concurrency, work / f"runs-{number}")
                if summary.passed != conversations:
                    raise RuntimeError(
                        f"the flow did not pass every conversation: {summary.line()}"
                    )
            elapsed = now() - started
            seconds[client] += elapsed
            per_round[number][client] = elapsed
            cpu[client] += time.process_time() - cpu_started
            sent[client] += emulator.totals()["requests"]

        for number in range(rounds):
            shift = number % len(clients)
            for client in clients[shift:] + clients[:shift]:
                measure(client, number)

    total = conversations * rounds
    rows = [
        {
            "client": client,
            "conversations": total,
            "requests": sent[client],
            "seconds": seconds[client],
            "conversations_per_s": total / seconds[client],
            "client_cpu_ms_per_conversation": 1000 * cpu[client] / total,
        }
        for client in clients
    ]
    bare = rows[0]["conversations_per_s"]
    for item in rows:
        item["ratio_to_bare"] = item["conversations_per_s"] / bare
    ratio = rows[2]["ratio_to_bare"]  # the batch flow's
    # Each round's ratio (the same conversations, back to back): the spread says how stable.
    rounds_flow = [r[clients[0]] / r[clients[2]] for r in per_round]
    rounds_engine = [r[clients[0]] / r[clients[1]] for r in per_round]
    rounds_pool = [r[clients[0]] / r[clients[3]] for r in per_round]
    rounds_bare = [1.0] * rounds
    by_client = (rounds_bare, rounds_engine, rounds_flow, rounds_pool)
    for item, by_round in zip(rows, by_client, strict=True):
        item["round_ratios"] = " ".join(f"{value:.3f}" for value in by_round)
    lowest = min(rounds_flow)
    return {
        "benchmark": "overhead",
        "settings": {
            "conversations_per_round": conversations,
            "rounds": rounds,
            "concurrency": concurrency,
            "latency_ms": latency_ms,
            "requests_per_conversation": REQUESTS_PER_CONVERSATION,
        },
        "rows": rows,
        "goals": [
            goal("batch flow / bare loop >= 0.9", round(ratio, 3), ratio >= 0.9),
            goal(
                "every round's batch flow / bare loop >= 0.9",
                f"{lowest:.3f} to {max(rounds_flow):.3f}",
                lowest >= 0.9,
            ),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    report = run(args.conversations, args.concurrency, args.latency_ms, rounds=args.rounds)
    emit(
        f"Orchestration overhead: {args.rounds} x {args.conversations} conversations, no limit, "
        f"latency {args.latency_ms:g} ms, concurrency {args.concurrency}",
        report,
        COLUMNS,
        args.json,
    )


if __name__ == "__main__":
    main()
