"""Benchmark 3, growth: time per conversation and peak memory at 1,000 and 10,000 conversations.

No rate limit, emulator latency 20 ms. Each size runs the batch flow in a fresh process (so its
peak resident memory is its own), against the same emulator and the same Prefect server.
Time per conversation = wall time around the flow call / conversations. Run:
``python -m benchmarks.growth``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import (
    API_KEY,
    API_KEY_ENV,
    emit,
    emulator_process,
    goal,
    peak_rss_mb,
    write_suite,
)
from benchmarks.flowrun import prefect_server

COLUMNS = (
    "conversations",
    "passed",
    "seconds",
    "ms_per_conversation",
    "ratio_to_smallest",
    "peak_rss_mb",
)


def child(args: argparse.Namespace) -> None:
    """One size, in its own process: run the flow, print seconds and peak memory as JSON."""
    from benchmarks.flowrun import run_flow

    seconds, summary = run_flow(Path(args.suite), args.concurrency, Path(args.results))
    report = {"seconds": seconds, "passed": summary.passed, "peak_rss_mb": peak_rss_mb()}
    print(json.dumps(report), flush=True)


def run(
    sizes: tuple[int, ...] = (1000, 10000),
    concurrency: int = 16,
    latency_ms: float = 20.0,
    *,
    own_server: bool = True,
) -> dict[str, Any]:
    """Each size in turn; the report."""
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulator_process(voiceflow_limit="off", latency_ms=latency_ms) as emulator,
        prefect_server(own_server) as api_url,
    ):
        env = dict(os.environ)
        if api_url:
            env["PREFECT_API_URL"] = api_url
        for size in sizes:
            emulator.reset()
            work = Path(tmp) / str(size)
            suite = write_suite(work, size, base_url=emulator.url, concurrency=concurrency)
            command = [sys.executable, "-m", "benchmarks.growth", "--child", str(size)]
            command += ["--suite", str(suite), "--results", str(work / "runs")]
            command += ["--concurrency", str(concurrency)]
            finished = subprocess.run(  # noqa: S603 - our own interpreter and module
                command, env={**env, API_KEY_ENV: API_KEY}, capture_output=True, text=True
            )
            if finished.returncode != 0:
                raise RuntimeError(f"the {size} run failed:\n{finished.stderr[-3000:]}")
            report = json.loads(finished.stdout.strip().splitlines()[-1])
            rows.append(
                {
                    "conversations": size,
                    "passed": report["passed"],
                    "seconds": report["seconds"],
                    "ms_per_conversation": 1000 * report["seconds"] / size,
                    "peak_rss_mb": report["peak_rss_mb"],
                }
            )
    smallest = rows[0]["ms_per_conversation"]
    for row in rows:
        row["ratio_to_smallest"] = row["ms_per_conversation"] / smallest
    ratio = rows[-1]["ratio_to_smallest"]
    peak = max(row["peak_rss_mb"] for row in rows)
    lost = sum(row["conversations"] - row["passed"] for row in rows)
    return {
        "benchmark": "growth",
        "settings": {"sizes": list(sizes), "concurrency": concurrency, "latency_ms": latency_ms},
        "rows": rows,
        "goals": [
            goal("time per conversation ratio <= 1.1", round(ratio, 3), ratio <= 1.1),
            goal("peak memory < 300 MB", f"{peak:.0f} MB", peak < 300),
            goal("every conversation passed", lost, lost == 0),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated sizes")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--suite", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return
    sizes = tuple(int(size) for size in args.sizes.split(","))
    report = run(sizes, args.concurrency, args.latency_ms)
    emit(
        f"Growth: {', '.join(str(s) for s in sizes)} conversations, no limit, "
        f"latency {args.latency_ms:g} ms, concurrency {args.concurrency}",
        report,
        COLUMNS,
        args.json,
    )


if __name__ == "__main__":
    main()
