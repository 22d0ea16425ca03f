"""The ``batch-conversations-shard`` flow: one share of a suite, started by ``batch-conversations``
with ``shards`` above 1.

Deployed as ``batch-conversations-shard/shard`` (``prefect.yaml``, entrypoint
``flows/batch_conversations_shard.py``) on the work queue its workers poll. The parent run passes
every parameter; the credentials block arrives as a reference. It ships in the package, so a worker
with the wheel installed can run it.

Its return value is what the parent merges, so it is persisted (JSON) in Prefect's result
storage. Workers on several machines need shared result storage:
``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK`` naming, for example, an ``s3-bucket`` block.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from prefect_sessions.batch.shards import ShardReport, run_shard
from prefect_sessions.conversation.budget import Budget
from prefect_sessions.flow_parameters import require_block_references, run_options
from prefect_sessions.providers import AnyCredentials
from prefect_sessions.run_options import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_RESULTS_DIR,
    MAX_SHARDS,
    ChunkSize,
    Concurrency,
    IdGlob,
    MaxShare,
    Rate,
    RunKey,
    Shards,
    Tag,
)


@flow(name="batch-conversations-shard", persist_result=True, result_serializer="json")
async def batch_conversations_shard(
    suite_path: str,
    shard: Annotated[int, Field(ge=0, lt=MAX_SHARDS)],
    shards: Shards,
    run_key: RunKey,
    credentials: AnyCredentials | None = None,
    base_url: str | None = None,
    concurrency: Concurrency | None = None,
    rate: Rate | None = None,
    max_share: MaxShare | None = None,
    results_dir: str = DEFAULT_RESULTS_DIR,
    chunk_size: ChunkSize = DEFAULT_CHUNK_SIZE,
    tags: list[Tag] | None = None,
    ids: list[IdGlob] | None = None,
    only: list[str] | None = None,
    budget: Budget | None = None,
    judge_cache: bool = True,
) -> ShardReport:
    """Run one share of a suite and hand every result back to the batch run that started it.

    Args:
        suite_path: The suite file (YAML), as this worker sees it.
        shard: Which share, from 0: the conversations at positions shard, shard + shards, ...
        shards: How many shares the suite is cut into.
        run_key: The batch run's key; running this shard again resumes its results file.
        credentials: A saved credentials block (a reference). Empty: the suite's connection.
        base_url: Send requests here instead.
        concurrency: Conversations in flight at once in this shard. Empty: the suite's.
        rate: Requests per second to stay under, if known.
        max_share: Use at most this share of the key's limit.
        results_dir: Where this shard's results file is kept, on the worker.
        chunk_size: Conversations per Prefect task run.
        tags: Take only conversations with one of these tags (the batch run's selection).
        ids: Take only conversations whose id matches one of these globs.
        only: Take only these conversation ids (the batch run's rerun of failures).
        budget: This shard's part of the batch run's budget.
        judge_cache: Reuse the judge model's answer to the same question (the batch run's).
    """
    given = locals()  # the parameters, before any other name is bound
    require_block_references("credentials")
    return await run_shard(run_options(given, apart=("shard", "shards")), shard, shards)
