"""A batch run: a suite in, results out, in this process or sharded across a work pool.

In this process, chunk tasks run the conversations (:mod:`.chunks`). With ``shards`` above one,
each share of the suite runs as a flow run of the shard deployment on the pool's workers, and the
results merge into one report here (:mod:`.shards`). The flow that runs it is
:func:`prefect_sessions.flows.batch_conversations`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.states import Failed

from prefect_sessions.batch.chunks import (
    DEFAULT_RESULTS_DIR,
    WHOLE_SUITE,
    connection_settings,
    listening,
    new_run_key,
    results_file,
    run_share,
    slug,
)
from prefect_sessions.batch.report import RunSummary, markdown_report
from prefect_sessions.batch.shards import SHARD_DEPLOYMENT, run_sharded
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.conversation.suite import LoadedSuite
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.errors import ConfigurationError, PrefectSessionsError, RunStoppedError
from prefect_sessions.http.shared_pacing import check_shared_pacing
from prefect_sessions.logs import run_logger

#: More shards than this is a typo, not a plan (each shard is a flow run on a worker).
MAX_SHARDS = 64


def _summary_counts(store: ResultStore) -> tuple[dict[str, str], int, int, int]:
    """Latest status per conversation, and the passed/failed/errored totals."""
    latest: dict[str, str] = {result.id: result.status for result in store}
    statuses = list(latest.values())
    return latest, statuses.count("passed"), statuses.count("failed"), statuses.count("errored")


def _failures(store: ResultStore, latest: dict[str, str]) -> Iterator[ConversationResult]:
    shown: set[str] = set()
    for result in store:
        is_latest = latest.get(result.id) == result.status
        if result.status != "passed" and is_latest and result.id not in shown:
            shown.add(result.id)
            yield result


async def run_batch(
    suite_path: str,
    run_key: str | None = None,
    base_url: str | None = None,
    concurrency: int | None = None,
    rate: float | None = None,
    max_share: float | None = None,
    credentials: ProviderCredentials | None = None,
    results_dir: str = DEFAULT_RESULTS_DIR,
    chunk_size: int = 100,
    shards: int = 1,
    shard_deployment: str | None = SHARD_DEPLOYMENT,
) -> RunSummary:
    """Run every conversation of a suite inside the current flow run; publish the summary and
    the report as artifacts. The parameters are the flow's
    (:func:`prefect_sessions.flows.batch_conversations`).

    Returns:
        The run's summary, or (as Prefect reads a returned state) the Failed state of a run that
        could not start or stopped, with one line as its message.
    """
    started = time.perf_counter()
    logger = run_logger()
    try:
        loaded: LoadedSuite = load_suite(suite_path)
    except ConfigurationError as exc:  # a deployment's bad suite: one line, not a traceback
        return cast(RunSummary, ended_with(exc))
    suite = loaded.suite
    run_key = run_key or new_run_key()
    results_path = results_file(results_dir, suite.name, run_key, WHOLE_SUITE)
    try:
        # Before any request: a run that cannot share its pacing must not start unshared.
        check_shared_pacing()
        if shards > 1:
            outcome = await run_sharded(
                loaded,
                suite_path,
                shards=shards,
                run_key=run_key,
                results_path=results_path,
                deployment=shard_deployment,
                credentials=credentials,
                options={
                    "base_url": base_url,
                    "concurrency": concurrency,
                    "rate": rate,
                    "max_share": max_share,
                    "results_dir": results_dir,
                    "chunk_size": chunk_size,
                },
            )
        else:
            outcome = await run_share(
                loaded,
                settings=connection_settings(
                    suite,
                    base_url=base_url,
                    rate=rate,
                    credentials=credentials,
                    max_share=max_share,
                ),
                run_key=run_key,
                results_path=results_path,
                concurrency=max(1, concurrency or suite.concurrency),
                chunk_size=chunk_size,
                progress_key=f"{slug(suite.name)}-progress",
                on_resume=lambda resumed, total: logger.info(
                    "Resuming run %s: %d of %d conversations already done", run_key, resumed, total
                ),
            )
    except ConfigurationError as exc:
        return cast(RunSummary, ended_with(exc))  # Prefect ends the run with this state
    except RunStoppedError as exc:
        done = len(ResultStore(results_path).finished())
        message = (
            f"{exc}. The run stopped: {done} of {loaded.conversation_count} conversations have "
            f"a verdict and are kept; resume with run key {run_key}"
        )
        return cast(RunSummary, ended_with(exc, message))

    store = outcome.store
    latest, passed, failed, errored = _summary_counts(store)
    summary = RunSummary(
        suite=suite.name,
        provider=suite.provider,
        run_key=run_key,
        conversations=outcome.conversations,
        passed=passed,
        failed=failed,
        errored=errored,
        resumed=outcome.resumed,
        requests=outcome.counters.requests,
        rate_limited=outcome.counters.rate_limited,
        duration_s=round(time.perf_counter() - started, 3),
        results_path=str(results_path),
        shards=shards,
    )
    await _publish(summary, store, latest, slug(suite.name))
    logger.info(summary.line())
    return summary


def ended_with(exc: PrefectSessionsError, message: str | None = None) -> Any:
    """The Failed state a flow returns when ``exc`` stopped it: one line as the run's message
    instead of a traceback; reading the state's result raises ``exc`` again."""
    return Failed(message=message or str(exc), data=exc)


async def _publish(
    summary: RunSummary, store: ResultStore, latest: dict[str, str], key: str
) -> None:
    """The summary table and the markdown report of failures, as Prefect artifacts."""
    table: list[dict[str, Any]] = [
        {"metric": name, "value": getattr(summary, name)}
        for name in ("conversations", "passed", "failed", "errored", "requests", "rate_limited")
    ]
    table.append({"metric": "duration_s", "value": summary.duration_s})
    await acreate_table_artifact(
        table=table, key=f"{key}-summary", description=f"{summary.suite}: run {summary.run_key}"
    )
    await acreate_markdown_artifact(
        markdown=markdown_report(summary, _failures(store, latest)),
        key=f"{key}-report",
        description=f"{summary.suite}: failures with their transcripts",
    )


__all__ = [
    "DEFAULT_RESULTS_DIR",
    "MAX_SHARDS",
    "connection_settings",
    "ended_with",
    "listening",
    "new_run_key",
    "run_batch",
    "slug",
]
