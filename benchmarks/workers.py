"""Benchmark 4, several workers: 4 processes sharing one API key, aggregate throughput / R.

The emulator enforces a fixed window of R requests per second on the one key. Each worker
process runs its share of the conversations (``run_conversations`` with the Voiceflow adapter,
never told R). Two ways, side by side:

- ``redis shared pacer``: every worker paces through one schedule in Redis
  (``prefect_sessions.http.pacers.use_redis_pacing``);
- ``in-process pacers``: each worker learns the limit on its own and paces only itself.

Throughput = requests that succeeded / (last worker's end - first worker's start); workers are
started together once all have imported everything. Run: ``python -m benchmarks.workers``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import emit, emulator_process, goal, write_suite

MODES = ("redis shared pacer", "in-process pacers")
COLUMNS = (
    "mode",
    "workers",
    "conversations",
    "failed",
    "requests_ok",
    "attempts",
    "share_429",
    "makespan_s",
    "throughput_per_s",
    "throughput_over_R",
)


def worker(args: argparse.Namespace) -> None:
    """One worker process: its share of the suite, after a "go" on stdin."""
    from prefect_sessions.batch.chunks import connection_settings
    from prefect_sessions.conversation.dataset import iter_conversations
    from prefect_sessions.conversation.results import ResultStore
    from prefect_sessions.conversation.runner import run_conversations
    from prefect_sessions.conversation.suite_file import load_suite
    from prefect_sessions.http.pacers import use_redis_pacing
    from prefect_sessions.run_options import RunOptions
    from prefect_sessions.voiceflow.adapter import VoiceflowAdapter

    if args.namespace:  # the shared schedule; otherwise each process paces itself
        use_redis_pacing(args.redis_url, namespace=args.namespace)
    loaded = load_suite(args.suite)
    mine = [c for i, c in enumerate(iter_conversations(loaded)) if i % args.of == args.worker]
    store = ResultStore(Path(args.results) / f"worker-{args.worker}.jsonl")

    async def go() -> None:
        async with VoiceflowAdapter(
            connection_settings(
                loaded.suite, RunOptions.of(suite_path=args.suite, base_url=args.url)
            )
        ) as a:
            await run_conversations(a, mine, concurrency=args.concurrency, store=store)

    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()
    asyncio.run(go())
    finished = time.time()
    results = store.latest().values()
    passed = sum(1 for r in results if r.status == "passed")
    print(json.dumps({"started": started, "finished": finished, "passed": passed}), flush=True)


def _fleet(
    mode: str, workers: int, suite: Path, url: str, concurrency: int, redis_url: str, work: Path
) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "benchmarks.workers", "--suite", str(suite), "--url", url]
    command += ["--of", str(workers), "--concurrency", str(concurrency), "--results", str(work)]
    if mode == MODES[0]:
        command += ["--redis-url", redis_url, "--namespace", f"bench-{uuid.uuid4().hex[:8]}"]
    processes = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [*command, "--worker", str(number)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for number in range(workers)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("a worker failed to start")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        reports = []
        for process in processes:
            assert process.stdout is not None
            reports.append(json.loads(process.stdout.readline()))
            process.wait(timeout=60)
        return reports
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def run(
    conversations: int = 100,
    workers: int = 4,
    concurrency: int = 8,
    limit: int = 20,
    latency_ms: float = 20.0,
    redis_url: str = "redis://127.0.0.1:6379/0",
    modes: tuple[str, ...] = MODES,
) -> dict[str, Any]:
    """Each mode in turn against one emulator; the report."""
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulator_process(voiceflow_limit=f"{limit}/1s", latency_ms=latency_ms) as emulator,
    ):
        suite = write_suite(Path(tmp), conversations, base_url=emulator.url, concurrency=8)
        for mode in modes:
            emulator.reset()
            work = Path(tmp) / mode.replace(" ", "-")
            reports = _fleet(mode, workers, suite, emulator.url, concurrency, redis_url, work)
            totals = emulator.totals()
            ok = totals["requests"] - totals["rate_limited"] - totals["faults"]
            makespan = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
            passed = sum(r["passed"] for r in reports)
            rows.append(
                {
                    "mode": mode,
                    "workers": workers,
                    "conversations": conversations,
                    "failed": conversations - passed,
                    "requests_ok": ok,
                    "attempts": totals["requests"],
                    "share_429": totals["rate_limited"] / max(1, totals["requests"]),
                    "makespan_s": makespan,
                    "throughput_per_s": ok / makespan,
                    "throughput_over_R": ok / makespan / limit,
                }
            )
    ours = rows[0]
    return {
        "benchmark": "workers",
        "settings": {
            "conversations": conversations,
            "workers": workers,
            "concurrency_per_worker": concurrency,
            "limit_per_second": limit,
            "latency_ms": latency_ms,
        },
        "rows": rows,
        "goals": [
            goal(
                "aggregate throughput >= 0.9 x R",
                round(ours["throughput_over_R"], 3),
                ours["throughput_over_R"] >= 0.9,
            ),
            goal("429s < 2% of attempts", f"{ours['share_429']:.2%}", ours["share_429"] < 0.02),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8, help="per worker")
    parser.add_argument("--limit", type=int, default=20, help="R, requests per second")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", help="also write the report here")
    # A worker process (started by the benchmark itself):
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--of", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--suite", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args)
        return
    report = run(
        args.conversations,
        args.workers,
        args.concurrency,
        args.limit,
        args.latency_ms,
        args.redis_url,
    )
    emit(
        f"Several workers: {args.workers} processes, one key, R={args.limit}/s fixed window, "
        f"{args.conversations} conversations",
        report,
        COLUMNS,
        args.json,
    )


if __name__ == "__main__":
    main()
