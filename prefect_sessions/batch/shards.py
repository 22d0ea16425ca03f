"""Sharding a suite across the workers of a Prefect work pool, one merged report at the end.

The batch flow with ``shards=N`` starts N flow runs of the shard deployment (``prefect.yaml``:
``batch-conversations-shard/shard``), one per :class:`~.execution.Share` of the suite, and waits for
them. Each shard runs its share with the same chunk tasks as a one-machine run, keeps its own
results file on its worker (so a re-run of that shard there resumes it), and returns every result
of its share as its flow-run result. The parent merges those into one results file and one report.

- **Shared pacing**: the shards share one API key, so they pace through one schedule in Redis
  (``PREFECT_SESSIONS_REDIS_URL`` in the workers' environment; see
  :mod:`prefect_sessions.http.shared_pacing`).
- **Results between machines** travel through Prefect's result storage: the shard flow persists
  its result, and the parent reads it. Across machines that storage must be shared
  (``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``, e.g. an S3 bucket block); on one machine Prefect's
  local storage is enough.
- **Nothing run twice**: shard runs are created with an idempotency key made of the suite, the
  run key and the shard. Running the batch flow again with the same run key reuses the shards
  that completed and re-schedules those that did not, which resume from their results files.
- **Secrets**: the credentials block goes to the shards as a reference, never as values.

With ``shard_deployment=None`` the shares run instead as tasks on the batch flow's task runner:
on a Dask cluster with prefect-dask's ``DaskTaskRunner``, results coming back as task results.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.deployments import arun_deployment
from prefect.flow_runs import wait_for_flow_run
from prefect.futures import PrefectFuture
from prefect.states import Scheduled, get_state_result
from pydantic import BaseModel, Field

from prefect_sessions.batch.chunks import (
    Share,
    ShareOutcome,
    results_file,
    run_share,
    slug,
)
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.conversation.suite import LoadedSuite
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.errors import ConfigurationError, RunStoppedError
from prefect_sessions.http.pacers import Pacers
from prefect_sessions.http.tally import Tally
from prefect_sessions.logs import run_logger
from prefect_sessions.run_options import SHARD_DEPLOYMENT, RunOptions


class ShardsFailedError(RunStoppedError):
    """Some shard runs did not complete; the others' results are kept in their flow runs."""


class ShardReport(BaseModel):
    """What one shard hands back to the parent run: every result of its share."""

    shard: int = Field(description="The share's index, from 0.")
    shards: int
    conversations: int = Field(description="Conversations in this share.")
    resumed: int = 0
    requests: int = 0
    rate_limited: int = 0
    ran_on: str = Field(default="", description="host:pid of the process that ran the share.")
    results: list[ConversationResult] = Field(default_factory=list)

    def errored(self) -> list[str]:
        """Conversations that reached no verdict (a resumed run tries them again)."""
        return [result.id for result in self.results if result.status == "errored"]


async def run_shard(
    options: RunOptions, shard: int, shards: int, pacers: Pacers | None = None
) -> ShardReport:
    """Run one share of a suite in this process: the body of the shard deployment's flow
    (``flows/batch_conversations_shard.py``). The options carry the batch run's selection
    (``tags``, ``ids``, and the rerun's ``only``); ``pacers`` the batch run's, when the share
    runs as its task (else this shard's run makes its own)."""
    share = _share(shard, shards)
    if pacers is None:
        pacers = Pacers.for_run()
        pacers.check()
    loaded = load_suite(
        options.suite_path,
        selection=options.selection(),
        credentials_given=options.credentials is not None,
    )
    outcome = await run_share(
        loaded,
        options,
        results_path=results_file(options.results_dir, loaded.suite.name, options.key, share),
        pacers=pacers,
        share=share,
    )
    results = list(outcome.store.latest().values())
    run_logger().info(
        "%s of %s (run %s): %d conversations, %d resumed, %d requests",
        share.label(),
        loaded.suite.name,
        options.key,
        outcome.conversations,
        outcome.resumed,
        outcome.sent.requests,
    )
    return ShardReport(
        shard=shard,
        shards=shards,
        conversations=outcome.conversations,
        resumed=outcome.resumed,
        requests=outcome.sent.requests,
        rate_limited=outcome.sent.rate_limited,
        ran_on=f"{socket.gethostname()}:{os.getpid()}",
        results=results,
    )


@task(name="run-shard", cache_policy=NO_CACHE, persist_result=False)
async def run_shard_task(
    options: RunOptions, shard: int, shards: int, pacers: Pacers
) -> ShardReport:
    """One share as a task of the batch flow, for its task runner to place (a Dask cluster's
    workers with prefect-dask's ``DaskTaskRunner``). ``pacers`` is the batch run's: the same
    registry in this process, one on the same Redis in another."""
    return await run_shard(options, shard, shards, pacers)


def _share(shard: int, shards: int) -> Share:
    if shards < 1:
        raise ConfigurationError(f"shards must be at least 1, not {shards}")
    try:
        return Share(shard, shards)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


def credentials_reference(credentials: ProviderCredentials | None) -> dict[str, Any] | None:
    """A saved block as the ``$ref`` a deployment parameter takes; refuses an unsaved one, whose
    secrets would otherwise be written into every shard's flow-run parameters."""
    if credentials is None:
        return None
    block_id = getattr(credentials, "_block_document_id", None)
    if block_id is None:
        raise ConfigurationError(
            "credentials: a sharded run passes the credentials block to its shards by reference, "
            "and this block is not saved; save it (python -m blocks, or block.save('name')) and "
            "pass the saved block"
        )
    return {"$ref": {"block_document_id": str(block_id)}}


def shard_parameters(
    options: RunOptions, share: Share, credentials: dict[str, Any] | None
) -> dict[str, Any]:
    """The parameters of one shard's flow run; unset options are left to the shard's defaults."""
    parameters = {**options.shard_parameters(), "shard": share.index, "shards": share.of}
    if credentials is not None:
        parameters["credentials"] = credentials
    return parameters


async def _start_or_reuse(
    deployment: str, parameters: dict[str, Any], key: str, name: str
) -> FlowRun:
    """Create the shard's flow run, or find the one an earlier attempt of this run created (same
    idempotency key). A found run is scheduled again, to resume from its results file, when it
    ended without completing or completed with errored conversations (a batch run again with
    the same key tries errored conversations again, sharded or not)."""
    flow_run = await arun_deployment(
        deployment,
        parameters=parameters,
        timeout=0,
        idempotency_key=key,
        flow_run_name=name,
    )
    state = flow_run.state
    if state is None or not state.is_final():
        return flow_run  # new, or still under way: wait for it
    if state.is_completed() and not (await _report(flow_run)).errored():
        return flow_run
    async with get_client() as client:
        await client.set_flow_run_state(flow_run.id, Scheduled(), force=True)
    return flow_run


async def _report(flow_run: FlowRun) -> ShardReport:
    assert flow_run.state is not None
    try:
        report = await get_state_result(flow_run.state)
    except Exception as exc:  # any storage error has the same fix
        raise ConfigurationError(
            f"the result of shard run {flow_run.name!r} cannot be read here "
            f"({type(exc).__name__}); "
            "shards hand their results over through Prefect's result storage, so every worker "
            "must use the same one: set PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK (e.g. to an "
            "s3-bucket block) in the work pool's environment"
        ) from exc
    if not isinstance(report, ShardReport):
        report = ShardReport.model_validate(report)
    return report


async def _on_work_pool(
    loaded: LoadedSuite, options: RunOptions, deployment: str
) -> list[ShardReport]:
    reference = credentials_reference(options.credentials)
    suite_name = slug(loaded.suite.name)
    runs: list[FlowRun] = []
    for index in range(options.shards):
        share = _share(index, options.shards)
        suffix = f"shard-{index + 1}-of-{options.shards}"
        runs.append(
            await _start_or_reuse(
                deployment,
                shard_parameters(options, share, reference),
                key=f"{suite_name}/{options.key}/{suffix}",
                name=f"{suite_name}-{slug(options.key)}-{suffix}",
            )
        )
    run_logger().info(
        "Sharded %s into %d runs of %s: %s",
        loaded.suite.name,
        options.shards,
        deployment,
        ", ".join(run.name for run in runs),
    )
    finished: list[FlowRun] = list(
        await asyncio.gather(*(wait_for_flow_run(run.id, timeout=None) for run in runs))
    )
    failed = [run for run in finished if run.state is None or not run.state.is_completed()]
    if failed:
        listed = ", ".join(f"{run.name} ({_said(run.state)})" for run in failed)
        raise ShardsFailedError(
            f"{len(failed)} of {options.shards} shard runs did not complete: {listed}; run the "
            f"batch flow again with run_key={options.key!r} and the same shards to re-run only "
            "those"
        )
    return [await _report(run) for run in finished]


def _said(state: State[Any] | None) -> str:
    if state is None:
        return "no state"
    name = state.name or state.type.value
    return f"{name}: {state.message}" if state.message else name


async def _on_task_runner(
    loaded: LoadedSuite, options: RunOptions, pacers: Pacers
) -> list[ShardReport]:
    # The same options as a shard's flow run, the block itself included: a task's parameters
    # are never stored on the server.
    # Prefect types an async task's future as holding the coroutine; it holds the report.
    futures = [
        run_shard_task.with_options(
            task_run_name=f"{slug(loaded.suite.name)}-shard-{index + 1}-of-{options.shards}"
        ).submit(options=options, shard=index, shards=options.shards, pacers=pacers)
        for index in range(options.shards)
    ]
    # Waiting in a thread keeps this loop free for Prefect's own work meanwhile.
    return [
        await asyncio.to_thread(cast("PrefectFuture[ShardReport]", future).result)
        for future in futures
    ]


def _merge(reports: Iterable[ShardReport], path: Path, expected: int) -> ShareOutcome:
    """Write every shard's results into one results file (replacing it whole, so a re-run of the
    parent never doubles a line) and check that each conversation is there exactly once; the
    whole suite's outcome."""
    outcome = ShareOutcome(conversations=expected, resumed=0, store=ResultStore(path))
    seen: set[str] = set()
    twice: list[str] = []
    merged: list[ConversationResult] = []
    for report in reports:
        outcome.resumed += report.resumed
        outcome.sent.add(Tally(requests=report.requests, rate_limited=report.rate_limited))
        for result in report.results:
            if result.key in seen:
                twice.append(result.key)
            seen.add(result.key)
            outcome.counters.count(result)
            merged.append(result)
    if twice or len(seen) != expected:
        raise ShardsFailedError(
            f"the shards' results do not cover the suite once: {len(seen)} of {expected} "
            f"conversations, {len(twice)} reported twice (e.g. {twice[:3]}); were the "
            "shards run with another copy of the suite?"
        )
    outcome.store.replace_all(merged)
    return outcome


async def run_sharded(
    loaded: LoadedSuite, options: RunOptions, *, results_path: Path, pacers: Pacers
) -> ShareOutcome:
    """Run a suite as ``options.shards`` shares and merge their results into ``results_path``.

    Each share runs as a flow run of ``options.shard_deployment`` on a worker of its work pool,
    or, with no deployment, as a task on the current flow's task runner."""
    if options.shard_deployment is None:
        reports = await _on_task_runner(loaded, options, pacers)
    else:
        reports = await _on_work_pool(loaded, options, options.shard_deployment)
    return _merge(reports, results_path, loaded.run_count)


__all__ = [
    "SHARD_DEPLOYMENT",
    "ShardReport",
    "ShardsFailedError",
    "run_shard",
    "run_sharded",
]
