"""Where a large run's memory goes: one in-process run of the batch flow with outputs on, the
resident memory sampled every 15 s and taken before and after each step of the run's end (the
summary's pass, the output dataset, the table's JSON text, the artifacts). A diagnostic with no
goal of its own: ``python -m benchmarks.run_end_memory --conversations 30000``.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import API_KEY, API_KEY_ENV, emulator_process, write_suite
from benchmarks.flowrun import prefect_server, run_flow

#: The steps of a run's end, in ``prefect_sessions.batch.run``: plain functions, then coroutines.
STEPS = ("digest", "write_output_dataset", "conversation_table_json")
ASYNC_STEPS = ("_finish", "_publish")


def memory() -> str:
    """This process's resident memory now and at its peak (Linux ``/proc``), in MB."""
    figures: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmRSS", "VmHWM")):
                name, value = line.split(":")
                figures[name] = int(value.split()[0]) // 1024
    return f"rss {figures['VmRSS']} MB, peak {figures['VmHWM']} MB"


def say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}: {memory()}", flush=True)


def traced(module: Any) -> None:
    """Wrap each step of ``module`` so that it reports memory before and after."""

    def plain(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(step)
        def around(*args: Any, **kwargs: Any) -> Any:
            say(f"before {name}")
            try:
                return step(*args, **kwargs)
            finally:
                say(f"after {name}")

        return around

    def awaited(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(step)
        async def around(*args: Any, **kwargs: Any) -> Any:
            say(f"before {name}")
            try:
                return await step(*args, **kwargs)
            finally:
                say(f"after {name}")

        return around

    for name in STEPS:
        setattr(module, name, plain(name, getattr(module, name)))
    for name in ASYNC_STEPS:
        setattr(module, name, awaited(name, getattr(module, name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    from prefect_sessions.batch import run

    traced(run)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(15):
            say("during the run")

    threading.Thread(target=sample, daemon=True).start()
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulator_process(voiceflow_limit="off", latency_ms=20) as emulator,
        prefect_server(True),
    ):
        os.environ[API_KEY_ENV] = API_KEY
        work = Path(tmp)
        suite = write_suite(
            work, args.conversations, base_url=emulator.url, concurrency=16, outputs=True
        )
        say("start")
        seconds, summary = run_flow(
            suite, args.concurrency, work / "runs", output_path=work / "out.jsonl"
        )
        done.set()
        say(f"done in {seconds:.1f} s, {summary.passed} passed")


if __name__ == "__main__":
    main()
