"""Benchmark 3, growth: time per conversation and peak memory at 1,000 and 10,000 conversations.

No rate limit, emulator latency 20 ms. Each size runs the batch flow in a fresh process (so its
peak resident memory is its own), against the same emulator and the same Prefect server.
Time per conversation = wall time around the flow call / conversations. Run:
``python -m benchmarks.growth``.

``--outputs`` runs the pipeline step instead: the suite names three outputs and every run writes
the output dataset (JSONL). Then the largest run is resumed with one more row in its dataset, and
the time from the resuming process's start to its first request is set beside the same time for
a fresh run of one row: the difference is what resuming costs (reading the results file, skipping
what is done). ``python -m benchmarks.growth --outputs --sizes 10000,100000``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    API_KEY,
    API_KEY_ENV,
    emit,
    emulator_process,
    goal,
    peak_rss_mb,
    table,
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

    output = Path(args.output) if args.output else None
    seconds, summary = run_flow(
        Path(args.suite),
        args.concurrency,
        Path(args.results),
        output_path=output,
        run_key=args.run_key,
    )
    report = {"seconds": seconds, "passed": summary.passed, "peak_rss_mb": peak_rss_mb()}
    if output is not None:
        with output.open("rb") as handle:
            report["output_rows"] = sum(1 for _ in handle)
    print(json.dumps(report), flush=True)


def child_command(size: int, work: Path, concurrency: int, outputs: bool) -> list[str]:
    """The command running one size in its own process."""
    command = [sys.executable, "-m", "benchmarks.growth", "--child", str(size)]
    command += ["--suite", str(work / "suite.yaml"), "--results", str(work / "runs")]
    command += ["--concurrency", str(concurrency)]
    if outputs:
        command += ["--output", str(work / "outputs.jsonl"), "--run-key", f"growth-{size}"]
    return command


def first_request_seconds(
    command: list[str], env: dict[str, str], emulator: Any
) -> tuple[float, dict[str, Any]]:
    """Seconds from starting ``command`` to the emulator's first request; the child's report."""
    emulator.reset()
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first: float | None = None
    while process.poll() is None and first is None:
        if emulator.totals()["requests"] > 0:
            first = time.perf_counter() - started
        else:
            time.sleep(0.01)  # polling the emulator's counter: nothing to await across processes
    stdout, stderr = process.communicate()
    if process.returncode != 0 or first is None:
        raise RuntimeError(f"the run failed or sent nothing:\n{stderr[-3000:]}")
    return first, json.loads(stdout.strip().splitlines()[-1])


def resume_rows(
    work: Path, size: int, tmp: Path, env: dict[str, str], emulator: Any, concurrency: int
) -> list[dict[str, Any]]:
    """Resume the ``size`` run with one more row, beside a fresh run of one row."""
    with (work / "rows.csv").open("a", encoding="utf-8") as handle:
        handle.write(f"u{size:06d},User {size},{100_000 + size}\n")
    resumed, report = first_request_seconds(
        child_command(size, work, concurrency, True), env, emulator
    )
    fresh_work = tmp / "fresh"
    write_suite(fresh_work, 1, base_url=emulator.url, concurrency=concurrency, outputs=True)
    fresh, _ = first_request_seconds(child_command(1, fresh_work, concurrency, True), env, emulator)
    return [
        {
            "run": f"resume of {size:,} (+1 row)",
            "to_first_request_s": resumed,
            "output_rows": report["output_rows"],
        },
        {"run": "fresh run of 1 row", "to_first_request_s": fresh, "output_rows": 1},
    ]


def run(
    sizes: tuple[int, ...] = (1000, 10000),
    concurrency: int = 16,
    latency_ms: float = 20.0,
    *,
    own_server: bool = True,
    outputs: bool = False,
) -> dict[str, Any]:
    """Each size in turn (then, with ``outputs``, the resume of the largest); the report."""
    rows: list[dict[str, Any]] = []
    resumes: list[dict[str, Any]] = []
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
            write_suite(work, size, base_url=emulator.url, concurrency=concurrency, outputs=outputs)
            finished = subprocess.run(  # noqa: S603 - our own interpreter and module
                child_command(size, work, concurrency, outputs),
                env={**env, API_KEY_ENV: API_KEY},
                capture_output=True,
                text=True,
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
                    "output_rows": report.get("output_rows", ""),
                }
            )
        if outputs:
            largest = sizes[-1]
            resumes = resume_rows(
                Path(tmp) / str(largest),
                largest,
                Path(tmp),
                {**env, API_KEY_ENV: API_KEY},
                emulator,
                concurrency,
            )
    smallest = rows[0]["ms_per_conversation"]
    for row in rows:
        row["ratio_to_smallest"] = row["ms_per_conversation"] / smallest
    ratio = rows[-1]["ratio_to_smallest"]
    peak = max(row["peak_rss_mb"] for row in rows)
    lost = sum(row["conversations"] - row["passed"] for row in rows)
    goals = [
        goal("time per conversation ratio <= 1.1", round(ratio, 3), ratio <= 1.1),
        goal("peak memory < 300 MB", f"{peak:.0f} MB", peak < 300),
        goal("every conversation passed", lost, lost == 0),
    ]
    if outputs:
        wrong = [r for r in rows if r["output_rows"] != r["conversations"]]
        goals.append(goal("one output row per conversation", len(wrong), not wrong))
        resumed, fresh = resumes
        cost = resumed["to_first_request_s"] - fresh["to_first_request_s"]
        goals.append(
            goal("resume's cost before its first request < 5 s", f"{cost:.2f} s", cost < 5)
        )
        expected = sizes[-1] + 1
        goals.append(
            goal(
                "the resumed dataset holds one row per conversation",
                resumed["output_rows"],
                resumed["output_rows"] == expected,
            )
        )
    return {
        "benchmark": "growth",
        "settings": {
            "sizes": list(sizes),
            "concurrency": concurrency,
            "latency_ms": latency_ms,
            "outputs": outputs,
        },
        "rows": rows,
        "resume": resumes,
        "goals": goals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated sizes")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument(
        "--outputs", action="store_true", help="the pipeline step: outputs and a dataset"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--run-key", help=argparse.SUPPRESS)
    parser.add_argument("--suite", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return
    sizes = tuple(int(size) for size in args.sizes.split(","))
    report = run(sizes, args.concurrency, args.latency_ms, outputs=args.outputs)
    emit(
        f"Growth: {', '.join(str(s) for s in sizes)} conversations, no limit, "
        f"latency {args.latency_ms:g} ms, concurrency {args.concurrency}"
        + (", outputs on" if args.outputs else ""),
        report,
        COLUMNS + (("output_rows",) if args.outputs else ()),
        args.json,
    )
    if report["resume"]:
        print()
        print(table(report["resume"], ("run", "to_first_request_s", "output_rows")))


if __name__ == "__main__":
    main()
