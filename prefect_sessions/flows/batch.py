"""The ``batch-conversations`` flow: every conversation of a suite, the summary and the report.

Defined once: ``prefect-sessions run`` calls it in-process, and the deployments run it through the
thin entrypoint ``flows/batch_conversations.py`` (``prefect.yaml``). Its parameters are what the
Prefect UI's run form shows: ``credentials`` is the union of the registered providers' credentials
blocks (a choice of block type and a picker of saved blocks, secret fields masked); a picked block
is stored in the flow run as a reference, never as values.
"""

from __future__ import annotations

from prefect import flow

from prefect_sessions.batch.report import RunSummary
from prefect_sessions.batch.run import run_batch
from prefect_sessions.conversation.budget import Budget
from prefect_sessions.flow_parameters import require_block_references, run_options
from prefect_sessions.providers import AnyCredentials
from prefect_sessions.run_options import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_RESULTS_DIR,
    LAST,
    SHARD_DEPLOYMENT,
    BaseUrl,
    ChunkSize,
    Concurrency,
    FailOn,
    IdGlob,
    MaxShare,
    Rate,
    RunKey,
    Shards,
    Tag,
)


# The summary is persisted (JSON, no secrets in it): a caller reading a run's result through the
# API (run_deployment, a state the server answered with) gets it too, not MissingResult.
@flow(name="batch-conversations", persist_result=True, result_serializer="json")
async def batch_conversations(
    suite_path: str,
    credentials: AnyCredentials | None = None,
    run_key: RunKey | None = None,
    base_url: BaseUrl | None = None,
    concurrency: Concurrency | None = None,
    rate: Rate | None = None,
    max_share: MaxShare | None = None,
    results_dir: str = DEFAULT_RESULTS_DIR,
    chunk_size: ChunkSize = DEFAULT_CHUNK_SIZE,
    shards: Shards = 1,
    shard_deployment: str | None = SHARD_DEPLOYMENT,
    fail_on: FailOn = "any",
    baseline: RunKey | None = LAST,
    tags: list[Tag] | None = None,
    ids: list[IdGlob] | None = None,
    only_failed: RunKey | None = None,
    output_path: str | None = None,
    budget: Budget | None = None,
    judge_cache: bool = True,
) -> RunSummary:
    """Run every conversation of a suite and report what passed, what failed and why.

    Args:
        suite_path: The suite file (YAML), relative to the working directory of the run.
        credentials: A saved credentials block of the suite's provider, used instead of the
            suite's own connection. Empty: the suite's saved block or inline connection.
        run_key: Name of this run; running again with the same key resumes it, skipping the
            conversations that already reached a verdict. Empty: a new key from the time.
        base_url: Send requests here instead (a private cloud, the emulator).
        concurrency: Conversations in flight at once (with shards, in each shard). Empty: the
            suite's.
        rate: Requests per second to stay under, if known. Empty: learned from the provider.
        max_share: Use at most this share of the key's limit, leaving the rest to production
            traffic on the same key (e.g. 0.5). Empty: the suite's max_share, else all of it.
        results_dir: Where the results file (JSONL) of each run is kept, on the worker.
        chunk_size: Conversations per Prefect task run.
        shards: Above 1, cut the suite into this many shares, each run as a flow run of the
            shard deployment on a worker of its work pool, and merge their results into one
            report here.
        shard_deployment: The deployment the shards run as (flow name/deployment name). Empty:
            the shards run as tasks on this flow's task runner instead (e.g. prefect-dask's
            DaskTaskRunner).
        fail_on: When the flow run ends Failed: ``any`` conversation failed or errored;
            only ``regressions`` against the baseline (newly failing, or added and failing); or
            ``never``. The summary is the run's result either way.
        baseline: The run to compare with: ``last`` (the latest earlier run of the suite), a
            run key, or ``none``.
        tags: Run only conversations with one of these tags.
        ids: Run only conversations whose id matches one of these globs (``refund-*``).
        only_failed: Run only the conversations that failed or errored in the run with this
            key (after a fix, without spending quota on the rest).
        output_path: Write the output dataset here, on the worker (.csv, .jsonl or .parquet):
            one row per conversation run with the input row's columns, the suite's named
            outputs, the status and the reason.
        budget: Caps on what the run spends (requests, LiveAvatar credits and session minutes,
            tokens), over the suite's: when the next conversation could cross one, none
            starts, those in flight finish, and the run ends Failed, resumable.
        judge_cache: Reuse the judge model's answer to the same question in the same
            repetition (a resumed run does not pay twice). Off: every judged expectation asks
            the model again.
    """
    given = locals()  # the parameters, before any other name is bound
    require_block_references("credentials")
    return await run_batch(run_options(given))
