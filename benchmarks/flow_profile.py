"""Where the batch flow's time goes: the same conversations through the engine alone and through
the flow, side by side, with an optional cProfile of the last flow run.

Per round: the engine's seconds, and the flow's seconds around the call and inside the flow
function (so Prefect's start-up is told apart from the run). This is how the fixes recorded in
RESULTS.md (benchmark 2) were found and checked.

Run: ``python -m benchmarks.flow_profile [--conversations 1000] [--chunk-size 100]
[--profile flow.prof]``, then e.g. ``python -m pstats flow.prof``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import emit, emulator_process, now, write_suite
from benchmarks.flowrun import prefect_server, run_flow
from benchmarks.overhead import _engine
from prefect_sessions.http import reset_shared_pacers

COLUMNS = ("round", "engine_s", "flow_s", "flow_inside_s", "inside_over_engine")


def run(
    conversations: int = 1000,
    concurrency: int = 16,
    latency_ms: float = 20.0,
    *,
    rounds: int = 3,
    chunk_size: int = 100,
    profile: str | None = None,
    own_server: bool = True,
) -> dict[str, Any]:
    """Time ``rounds`` engine runs and flow runs, alternating; the report."""
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulator_process(voiceflow_limit="off", latency_ms=latency_ms) as emulator,
        prefect_server(own_server),
    ):
        work = Path(tmp)
        suite = write_suite(work, conversations, base_url=emulator.url, concurrency=concurrency)
        for number in range(rounds):
            emulator.reset()
            reset_shared_pacers()
            started = now()
            asyncio.run(_engine(suite, emulator.url, concurrency, work / f"e{number}.jsonl"))
            engine = now() - started
            emulator.reset()
            reset_shared_pacers()
            profiler = cProfile.Profile() if profile and number == rounds - 1 else None
            if profiler is not None:
                profiler.enable()
            wall, summary = run_flow(
                suite, concurrency, work / f"runs-{number}", chunk_size=chunk_size
            )
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(profile))
            if summary.passed != conversations:
                raise RuntimeError(f"the flow did not pass every conversation: {summary.line()}")
            rows.append(
                {
                    "round": number + 1,
                    "engine_s": engine,
                    "flow_s": wall,
                    "flow_inside_s": summary.duration_s,
                    "inside_over_engine": summary.duration_s / engine,
                }
            )
    return {
        "benchmark": "flow_profile",
        "settings": {"conversations": conversations, "chunk_size": chunk_size},
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--profile", help="write a cProfile of the last flow run here")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    report = run(
        args.conversations,
        args.concurrency,
        args.latency_ms,
        rounds=args.rounds,
        chunk_size=args.chunk_size,
        profile=args.profile,
    )
    emit(
        f"Flow profile: {args.conversations} conversations, chunks of {args.chunk_size}",
        report,
        COLUMNS,
        args.json,
    )


if __name__ == "__main__":
    main()
