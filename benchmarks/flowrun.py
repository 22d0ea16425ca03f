"""Running the batch flow from a benchmark: on the Prefect server named by ``PREFECT_API_URL``,
or on a temporary local one (Prefect's test harness, SQLite) started for the benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import now
from prefect_sessions.batch.report import RunSummary
from prefect_sessions.flows import batch_conversations


@contextlib.contextmanager
def prefect_server(own: bool) -> Iterator[str | None]:
    """A Prefect API for the flow: a temporary one when ``own`` and none is configured."""
    from prefect.settings import PREFECT_API_URL

    if not own or PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    from prefect.testing.utilities import prefect_test_harness

    # The temporary server must not try to reach the internet (telemetry).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    # The harness logs its server's start and stop at INFO; the benchmark prints tables only.
    logging.getLogger("prefect").setLevel(logging.WARNING)
    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


def run_flow(
    suite_path: Path,
    concurrency: int,
    results_dir: Path,
    *,
    chunk_size: int = 100,
    output_path: Path | None = None,
    run_key: str | None = None,
) -> tuple[float, RunSummary]:
    """Run ``batch_conversations`` on a suite; the wall time around the call and its summary."""

    async def go() -> RunSummary:
        summary: RunSummary = await batch_conversations(
            suite_path=str(suite_path),
            concurrency=concurrency,
            results_dir=str(results_dir),
            chunk_size=chunk_size,
            output_path=str(output_path) if output_path else None,
            run_key=run_key,
        )
        return summary

    started = now()
    summary = asyncio.run(go())
    return now() - started, summary
