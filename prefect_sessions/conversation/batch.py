"""The batch flow: a suite in, results out, in this process or sharded across a work pool.

In this process, chunk tasks run the conversations (:mod:`.execution`). With ``shards`` above one,
each share of the suite runs as a flow run of the shard deployment on the pool's workers, and the
results merge into one report here (:mod:`.shards`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any, cast

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.states import Failed
from pydantic import Field

from prefect_sessions.conversation.execution import (
    DEFAULT_RESULTS_DIR,
    WHOLE_SUITE,
    connection_settings,
    listen,
    new_run_key,
    results_file,
    run_share,
    slug,
)
from prefect_sessions.conversation.report import RunSummary, markdown_report
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.conversation.shards import SHARD_DEPLOYMENT, run_sharded
from prefect_sessions.conversation.suite import LoadedSuite, load_suite
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


# The summary is persisted (JSON, no secrets in it): a caller reading a run's result through the
# API (run_deployment, a state the server answered with) gets it too, not MissingResult.
@flow(name="batch-conversations", persist_result=True, result_serializer="json")
async def batch_conversations(
    suite_path: str,
    run_key: Annotated[str, Field(max_length=200)] | None = None,
    base_url: Annotated[str, Field(pattern=r"^https?://[^/\s]+")] | None = None,
    concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None,
    rate: Annotated[float, Field(gt=0)] | None = None,
    max_share: Annotated[float, Field(gt=0, le=1)] | None = None,
    credentials: ProviderCredentials | None = None,
    results_dir: str = DEFAULT_RESULTS_DIR,
    chunk_size: Annotated[int, Field(ge=1, le=10_000)] = 100,
    shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] = 1,
    shard_deployment: str | None = SHARD_DEPLOYMENT,
) -> RunSummary:
    """Run every conversation of a suite and report what passed, what failed and why.

    Args:
        suite_path: the suite file (YAML).
        run_key: name of this run; running again with the same key resumes it, skipping the
            conversations that already reached a verdict. Default: a new key from the time.
        base_url: send requests here instead (a private cloud, the emulator).
        concurrency: conversations in flight at once (default: the suite's); with shards, in
            each shard.
        rate: requests per second to stay under, if known (otherwise learned from the provider).
        max_share: use at most this share of the key's limit, leaving the rest to production
            traffic on the same key (default: the suite's ``max_share``, else all of it).
        credentials: a credentials block to use instead of the suite's connection.
        results_dir: where the results file (JSONL) of each run is kept.
        chunk_size: conversations per Prefect task run.
        shards: above 1, cut the suite into this many shares, each run as a flow run of
            ``shard_deployment`` on a worker of its work pool; results merge into one report.
        shard_deployment: the deployment the shards run as (``flow name/deployment name``);
            ``None`` runs them as tasks on this flow's task runner instead (e.g. prefect-dask's
            ``DaskTaskRunner``).
    """
    started = time.perf_counter()
    logger = run_logger()
    loaded: LoadedSuite = load_suite(suite_path)
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
    "batch_conversations",
    "connection_settings",
    "listen",
    "new_run_key",
    "slug",
]
