"""The batch flow: a suite in, results out.

Granularity decides speed (design.md): a Prefect task runs a *chunk* of conversations, never a
turn. Turns are plain coroutines paced by the HTTP engine; at most ``concurrency`` conversations
are in flight across all chunks. Results stream to a JSONL file as conversations finish, so memory
does not grow with the suite and a re-run with the same run key resumes where the last one stopped.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, task
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from pydantic import Field, SecretStr

from prefect_sessions.conversation.dataset import Conversation, iter_conversations
from prefect_sessions.conversation.protocol import ConnectionSettings
from prefect_sessions.conversation.providers import provider_spec
from prefect_sessions.conversation.report import RunSummary, markdown_report
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.conversation.runner import RunCounters, run_conversations
from prefect_sessions.conversation.suite import LoadedSuite, Suite, load_suite
from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.logs import run_logger

DEFAULT_RESULTS_DIR = ".prefect-sessions/runs"

#: Chunks in flight at once; each runs ``concurrency / PARALLEL_CHUNKS`` conversations, so one
#: chunk's slow tail overlaps the next chunk's start.
PARALLEL_CHUNKS = 2

ResultListener = Callable[[ConversationResult], None]
_listeners: dict[str, ResultListener] = {}


def listen(run_key: str, listener: ResultListener | None) -> None:
    """Call ``listener`` for each result of run ``run_key`` in this process (the CLI's progress
    bar); ``None`` stops listening."""
    if listener is None:
        _listeners.pop(run_key, None)
    else:
        _listeners[run_key] = listener


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes (what Prefect artifact keys accept)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "suite"


def new_run_key() -> str:
    # The time for people, a random suffix so two runs started in the same second never share
    # a results file (the second would "resume" the first and skip its conversations).
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def connection_settings(
    suite: Suite,
    *,
    base_url: str | None = None,
    rate: float | None = None,
    credentials: ProviderCredentials | None = None,
    environ: dict[str, str] | None = None,
) -> ConnectionSettings:
    """How this run reaches the provider: a block given to the flow, the suite's saved block, or
    the suite's inline connection with the key read from the environment."""
    environ = dict(os.environ) if environ is None else environ
    connection = suite.connection
    api_key = None
    if connection is not None and connection.api_key_env:
        value = environ.get(connection.api_key_env)
        api_key = SecretStr(value) if value else None
    return ConnectionSettings(
        credentials_block=suite.credentials,
        block=credentials,
        base_url=base_url or (connection.base_url if connection else None),
        api_key=api_key,
        fields=connection.provider_fields if connection else {},
        rate=rate,
    )


def _chunks(conversations: Iterator[Conversation], size: int) -> Iterator[list[Conversation]]:
    chunk: list[Conversation] = []
    for conversation in conversations:
        chunk.append(conversation)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@task(name="run-conversations", cache_policy=NO_CACHE, persist_result=False)
async def run_conversation_chunk(
    provider: str,
    settings: ConnectionSettings,
    conversations: list[Conversation],
    results_path: str,
    concurrency: int,
    run_key: str,
) -> RunCounters:
    """Run a chunk of conversations against one provider; append each result as it finishes."""
    factory = provider_spec(provider).adapter_factory()
    store = ResultStore(results_path)
    async with factory(settings) as adapter:
        return await run_conversations(
            adapter,
            conversations,
            concurrency=concurrency,
            store=store,
            on_result=_listeners.get(run_key),
        )


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


@flow(name="batch-conversations")
async def batch_conversations(
    suite_path: str,
    run_key: Annotated[str, Field(max_length=200)] | None = None,
    base_url: Annotated[str, Field(pattern=r"^https?://[^/\s]+")] | None = None,
    concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None,
    rate: Annotated[float, Field(gt=0)] | None = None,
    credentials: ProviderCredentials | None = None,
    results_dir: str = DEFAULT_RESULTS_DIR,
    chunk_size: Annotated[int, Field(ge=1, le=10_000)] = 100,
) -> RunSummary:
    """Run every conversation of a suite and report what passed, what failed and why.

    Args:
        suite_path: the suite file (YAML).
        run_key: name of this run; running again with the same key resumes it, skipping the
            conversations that already reached a verdict. Default: a new key from the time.
        base_url: send requests here instead (a private cloud, the emulator).
        concurrency: conversations in flight at once (default: the suite's).
        rate: requests per second to stay under, if known (otherwise learned from the provider).
        credentials: a credentials block to use instead of the suite's connection.
        results_dir: where the results file (JSONL) of each run is kept.
        chunk_size: conversations per Prefect task run.
    """
    started = time.perf_counter()
    logger = run_logger()
    loaded: LoadedSuite = load_suite(suite_path)
    suite = loaded.suite
    run_key = run_key or new_run_key()
    results_path = Path(results_dir) / slug(suite.name) / f"{slug(run_key)}.jsonl"
    store = ResultStore(results_path)
    finished = store.finished()
    total = loaded.conversation_count
    to_run = (c for c in iter_conversations(loaded) if finished.get(c.id) != c.fingerprint)
    # Only a resumed run needs the extra pass that counts what is already done.
    resumed = (
        sum(1 for c in iter_conversations(loaded) if finished.get(c.id) == c.fingerprint)
        if finished
        else 0
    )
    if resumed:
        logger.info("Resuming run %s: %d of %d conversations already done", run_key, resumed, total)

    in_flight = max(1, concurrency or suite.concurrency)
    # A suite of one chunk must not run at 1/PARALLEL_CHUNKS of the concurrency asked for.
    chunks = max(1, -(-(total - resumed) // chunk_size))
    parallel = min(PARALLEL_CHUNKS, in_flight, chunks)
    per_chunk = max(1, in_flight // parallel)
    settings = connection_settings(suite, base_url=base_url, rate=rate, credentials=credentials)
    artifact_key = slug(suite.name)
    progress_id = await acreate_progress_artifact(
        progress=100.0 * resumed / total,
        key=f"{artifact_key}-progress",
        description=f"Conversations of {suite.name} done (run {run_key})",
    )
    counters = RunCounters()
    done = resumed
    gate = asyncio.Semaphore(parallel)

    async def run_chunk(chunk: list[Conversation]) -> None:
        nonlocal done
        try:
            result = await run_conversation_chunk(
                suite.provider, settings, chunk, str(results_path), per_chunk, run_key
            )
            counters.add(result)
            done += len(chunk)
            await aupdate_progress_artifact(progress_id, progress=100.0 * done / total)
        finally:
            gate.release()

    pending: set[asyncio.Task[None]] = set()
    for chunk in _chunks(to_run, chunk_size):
        await gate.acquire()  # hold at most `parallel` chunks in memory and in flight
        job = asyncio.ensure_future(run_chunk(chunk))
        pending.add(job)
        job.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)

    latest, passed, failed, errored = _summary_counts(store)
    summary = RunSummary(
        suite=suite.name,
        provider=suite.provider,
        run_key=run_key,
        conversations=total,
        passed=passed,
        failed=failed,
        errored=errored,
        resumed=resumed,
        requests=counters.requests,
        rate_limited=counters.rate_limited,
        duration_s=round(time.perf_counter() - started, 3),
        results_path=str(results_path),
    )
    await _publish(summary, store, latest, artifact_key)
    logger.info(summary.line())
    return summary


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
