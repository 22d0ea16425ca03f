"""Benchmark 1, at the limit: makespan / ideal, share of 429s and failed conversations.

The emulator enforces a fixed window of R requests per second per API key (Voiceflow's scheme).
The same conversations run three times through the same runner (``run_conversations``):

- ``prefect-sessions``: the HTTP engine, never told R; it learns the limit from the headers;
- ``tenacity``: raw httpx, exponential backoff with full jitter, ``Retry-After`` ignored;
- ``sdk``: raw httpx, openai-python's policy (2 retries, 0.5 s base).

Ideal makespan = requests that succeeded / R. Run: ``python -m benchmarks.at_limit``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.baselines import RawVoiceflowAdapter
from benchmarks.common import (
    API_KEY,
    PROJECT_ID,
    emit,
    emulator_process,
    goal,
    now,
    write_suite,
)
from prefect_sessions.conversation.adapters.voiceflow import VoiceflowAdapter
from prefect_sessions.conversation.batch import connection_settings
from prefect_sessions.conversation.dataset import iter_conversations
from prefect_sessions.conversation.protocol import ConversationAdapter
from prefect_sessions.conversation.results import ResultStore
from prefect_sessions.conversation.runner import run_conversations
from prefect_sessions.conversation.suite import load_suite
from prefect_sessions.http import reset_shared_pacers

POLICIES = ("prefect-sessions", "tenacity", "sdk")
COLUMNS = (
    "policy",
    "conversations",
    "failed",
    "requests_ok",
    "attempts",
    "answered_429",
    "share_429",
    "makespan_s",
    "ideal_s",
    "makespan_over_ideal",
)


def _adapter(policy: str, suite_path: Path, url: str) -> ConversationAdapter:
    if policy == "prefect-sessions":
        loaded = load_suite(suite_path)
        # No rate given: the engine learns the limit from X-RateLimit-* alone.
        return VoiceflowAdapter(connection_settings(loaded.suite, base_url=url))
    return RawVoiceflowAdapter(url, API_KEY, PROJECT_ID, policy)


async def _one(policy: str, suite_path: Path, url: str, concurrency: int, work: Path) -> float:
    conversations = list(iter_conversations(load_suite(suite_path)))
    store = ResultStore(work / f"{policy}.jsonl")
    reset_shared_pacers()
    started = now()
    async with _adapter(policy, suite_path, url) as adapter:
        await run_conversations(adapter, conversations, concurrency=concurrency, store=store)
    return now() - started


def run(
    conversations: int = 100, concurrency: int = 32, limit: int = 20, latency_ms: float = 20.0
) -> dict[str, Any]:
    """Run the three policies against one emulator; the report (rows and goals)."""
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulator_process(voiceflow_limit=f"{limit}/1s", latency_ms=latency_ms) as emulator,
    ):
        work = Path(tmp)
        suite_path = write_suite(
            work, conversations, base_url=emulator.url, concurrency=concurrency
        )
        for policy in POLICIES:
            emulator.reset()
            makespan = asyncio.run(_one(policy, suite_path, emulator.url, concurrency, work))
            totals = emulator.totals()
            latest = ResultStore(work / f"{policy}.jsonl").latest()
            ok = totals["requests"] - totals["rate_limited"] - totals["faults"]
            ideal = ok / limit
            rows.append(
                {
                    "policy": policy,
                    "conversations": len(latest),
                    "failed": sum(1 for r in latest.values() if r.status != "passed"),
                    "requests_ok": ok,
                    "attempts": totals["requests"],
                    "answered_429": totals["rate_limited"],
                    "share_429": totals["rate_limited"] / max(1, totals["requests"]),
                    "makespan_s": makespan,
                    "ideal_s": ideal,
                    "makespan_over_ideal": makespan / ideal if ideal else float("inf"),
                }
            )
    ours = rows[0]
    return {
        "benchmark": "at_limit",
        "settings": {
            "conversations": conversations,
            "concurrency": concurrency,
            "limit_per_second": limit,
            "latency_ms": latency_ms,
        },
        "rows": rows,
        "goals": [
            goal(
                "makespan / ideal <= 1.10",
                round(ours["makespan_over_ideal"], 3),
                ours["makespan_over_ideal"] <= 1.10,
            ),
            goal("429s < 2% of attempts", f"{ours['share_429']:.2%}", ours["share_429"] < 0.02),
            goal("zero failed conversations", ours["failed"], ours["failed"] == 0),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--limit", type=int, default=20, help="R, requests per second")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    report = run(args.conversations, args.concurrency, args.limit, args.latency_ms)
    emit(
        f"At the limit: {args.conversations} conversations, R={args.limit}/s fixed window, "
        f"concurrency {args.concurrency}",
        report,
        COLUMNS,
        args.json,
    )


if __name__ == "__main__":
    main()
