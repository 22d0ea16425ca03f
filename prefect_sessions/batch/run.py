"""A batch run: a suite in, results out, in this process or sharded across a work pool.

In this process, chunk tasks run the conversations (:mod:`.chunks`). With ``shards`` above one,
each share of the suite runs as a flow run of the shard deployment on the pool's workers, and the
results merge into one report here (:mod:`.shards`). The flow that runs it is
:func:`prefect_sessions.flows.batch_conversations`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any, cast

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.states import Failed

from prefect_sessions.batch.chunks import (
    WHOLE_SUITE,
    ShareOutcome,
    in_a_run,
    listening,
    new_run_key,
    results_file,
    run_share,
    slug,
)
from prefect_sessions.batch.comparison import RunRecord, compare
from prefect_sessions.batch.history import (
    RUN_KEY_ROW,
    conversations_key,
    find_record,
    require_record,
    summary_key,
    tag_this_run,
)
from prefect_sessions.batch.output_files import check_output_path, write_output_dataset
from prefect_sessions.batch.report import (
    RunSummary,
    comparison_markdown,
    conversation_table_json,
    markdown_report,
)
from prefect_sessions.batch.shards import run_sharded
from prefect_sessions.batch.verdicts import LatencyFigures, Verdict, digest, summed_usage
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.conversation.suite import LoadedSuite
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.errors import ConfigurationError, PrefectSessionsError, RunStoppedError
from prefect_sessions.http.pacers import Pacers
from prefect_sessions.logs import run_logger
from prefect_sessions.run_options import LAST, NO_BASELINE, FailOn, RunOptions


async def select(options: RunOptions) -> tuple[LoadedSuite, RunOptions]:
    """The suite with the conversations a run takes (by tag, by id glob, or those that failed
    or errored in run ``only_failed``, looked up through the Prefect API), and the options with
    that rerun's ids resolved into ``only``.

    Raises:
        ConfigurationError: the suite is invalid, the run key is unknown, or nothing matched.
    """
    given = options.credentials is not None
    if options.only_failed is None:
        selection = options.selection()
        return load_suite(options.suite_path, selection=selection, credentials_given=given), options
    suite = load_suite(options.suite_path, credentials_given=given).suite
    record = await require_record(suite.name, options.only_failed, "--only-failed")
    options = options.model_copy(update={"only": frozenset(record.failing())})
    selection = options.selection(only_from=f"run {options.only_failed}")
    loaded = load_suite(options.suite_path, selection=selection, credentials_given=given)
    return loaded, options


async def _baseline(suite_name: str, run_key: str, baseline: str | None) -> RunRecord | None:
    """The run to compare with, found before any request: an unknown key is bad input."""
    if baseline is None or baseline == NO_BASELINE:
        return None
    if baseline == LAST:
        return await find_record(suite_name, exclude_run_key=run_key)
    return await require_record(suite_name, baseline, "baseline")


async def run_batch(options: RunOptions) -> RunSummary:
    """Run the selected conversations of a suite inside the current flow run, compare the run
    with its baseline, and publish the summary, the per-conversation table, the comparison and
    the report as artifacts. The options are the flow's
    (:func:`prefect_sessions.flows.batch_conversations`).

    Returns:
        The run's summary; or, as Prefect reads a returned state, a Failed state: holding the
        summary when ``fail_on`` says the verdict fails the run, or with one line as its message
        when the run could not start or stopped.
    """
    started = time.perf_counter()
    options = options.keyed(options.run_key or new_run_key())
    try:
        if options.output_path is not None:
            check_output_path(options.output_path)
        loaded, options = await select(options)
        suite = loaded.suite
        # Two requests to the API, side by side.
        flow_run_id, compared_with = await asyncio.gather(
            tag_this_run(suite.name, options.key),
            _baseline(suite.name, options.key, options.baseline),
        )
    except ConfigurationError as exc:  # a deployment's bad input: one line, not a traceback
        return cast(RunSummary, ended_with(exc))
    results_path = results_file(options.results_dir, suite.name, options.key, WHOLE_SUITE)
    try:
        # The run's pacers; before any request, a run that cannot share its pacing must not
        # start unshared.
        pacers = Pacers.for_run()
        pacers.check()
        outcome = await _run_shares(loaded, options, results_path, pacers)
    except ConfigurationError as exc:
        return cast(RunSummary, ended_with(exc))  # Prefect ends the run with this state
    except RunStoppedError as exc:
        line = _stopped_line(exc, loaded, options, results_path)
        if options.output_path is not None:  # what finished is handed on all the same
            written = await asyncio.to_thread(
                write_output_dataset, results_path, options.output_path
            )
            line += f"; the {written.rows} rows with a verdict are in {written.path}"
        return cast(RunSummary, ended_with(exc, line))

    return await _finish(
        loaded,
        options,
        outcome,
        results_path,
        started=started,
        flow_run_id=flow_run_id,
        compared_with=compared_with,
    )


async def _finish(
    loaded: LoadedSuite,
    options: RunOptions,
    outcome: ShareOutcome,
    results_path: Path,
    *,
    started: float,
    flow_run_id: str | None,
    compared_with: RunRecord | None,
) -> RunSummary:
    """After the last conversation: the summary, the output dataset, the comparison with the
    baseline and the artifacts; Failed when the verdict fails the run."""
    # One pass over the results file; passed transcripts are not held (100,000 of them would be).
    digested = await asyncio.to_thread(lambda: digest(outcome.store.in_order()))
    judged = digested.verdicts
    summary = summarize(
        loaded,
        run_key=options.key,
        judged=judged,
        latency=digested.latency,
        outcome=outcome,
        duration_s=time.perf_counter() - started,
        results_path=results_path,
        shards=options.shards,
        fail_on=options.fail_on,
        flow_run_id=flow_run_id,
    )
    if options.output_path is not None:
        written = await asyncio.to_thread(write_output_dataset, results_path, options.output_path)
        summary.output_path, summary.output_rows = str(written.path), written.rows
    logger = run_logger()
    if compared_with is not None:
        current = summary.record(judged)
        summary.comparison = compare(
            compared_with, current, partial=not loaded.selection.everything
        )
        logger.info("Compared %s", summary.comparison.line())
    if in_a_run():
        table = conversation_table_json(judged)
        not_passed = [verdict for verdict in judged if verdict.status != "passed"]
        failing = digested.failing
        del digested, judged  # every verdict is in the table's text: let them go before it is sent
        await _publish(summary, table, failing, not_passed, slug(loaded.suite.name))
    logger.info(summary.line())
    if summary.failing:
        return cast(RunSummary, Failed(message=_verdict_line(summary), data=summary))
    return summary


async def _run_shares(
    loaded: LoadedSuite, options: RunOptions, results_path: Path, pacers: Pacers
) -> ShareOutcome:
    """The suite as one share in this process, or as ``options.shards`` shares merged here."""
    if options.shards > 1:
        return await run_sharded(loaded, options, results_path=results_path, pacers=pacers)
    logger = run_logger()
    return await run_share(
        loaded,
        options,
        results_path=results_path,
        pacers=pacers,
        progress_key=f"{slug(loaded.suite.name)}-progress",
        on_resume=lambda resumed, total: logger.info(
            "Resuming run %s: %d of %d conversations already done", options.key, resumed, total
        ),
    )


def _stopped_line(
    exc: RunStoppedError, loaded: LoadedSuite, options: RunOptions, results_path: Path
) -> str:
    done = len(ResultStore(results_path).finished())
    counted = "conversations" if loaded.run_count == loaded.conversation_count else "runs"
    return (
        f"{exc}. The run stopped: {done} of {loaded.run_count} {counted} have "
        f"a verdict and are kept; resume with run key {options.key}"
    )


def summarize(
    loaded: LoadedSuite,
    *,
    run_key: str,
    judged: list[Verdict],
    latency: LatencyFigures,
    outcome: ShareOutcome,
    duration_s: float,
    results_path: Path,
    shards: int = 1,
    fail_on: FailOn = "any",
    flow_run_id: str | None = None,
) -> RunSummary:
    """A run's summary from its verdicts and its results."""
    statuses = [verdict.status for verdict in judged]
    return RunSummary(
        suite=loaded.suite.name,
        provider=loaded.suite.provider,
        run_key=run_key,
        conversations=loaded.conversation_count,
        passed=statuses.count("passed"),
        failed=statuses.count("failed"),
        errored=statuses.count("errored"),
        runs=outcome.conversations,
        flaky=[verdict.id for verdict in judged if verdict.flaky],
        resumed=outcome.resumed,
        requests=outcome.sent.requests,
        rate_limited=outcome.sent.rate_limited,
        duration_s=round(duration_s, 3),
        results_path=str(results_path),
        shards=shards,
        latency=latency,
        usage=summed_usage(verdict.usage for verdict in judged),
        selection=loaded.selection.describe(),
        fail_on=fail_on,
        flow_run_id=flow_run_id,
    )


def _verdict_line(summary: RunSummary) -> str:
    """The Failed run's message: what failed, by the run's rule."""
    if summary.fail_on == "regressions" and summary.comparison is not None:
        regressions = summary.comparison.regressions
        shown = ", ".join(regressions[:5]) + (" ..." if len(regressions) > 5 else "")
        return f"{len(regressions)} regressions {summary.comparison.line()}: {shown}"
    return summary.line()


def ended_with(exc: PrefectSessionsError, message: str | None = None) -> Any:
    """The Failed state a flow returns when ``exc`` stopped it: one line as the run's message
    instead of a traceback; reading the state's result raises ``exc`` again."""
    return Failed(message=message or str(exc), data=exc)


#: Where the created artifact's ID is in the first bytes of the API's answer.
_ARTIFACT_ID = re.compile(rb'"id"\s*:\s*"([0-9a-fA-F-]{36})"')


async def _create_table_text(rows_json: str, key: str, description: str) -> None:
    """A table artifact whose rows are already JSON text, sent as Prefect's client sends one
    (its ``prefect.artifact.created`` event too) without the copies its client makes: its
    ``TableArtifact`` validates, sanitizes and dumps the rows, and ``create_artifact`` encodes
    the body as one more object and parses the whole echo of it back (for 100,000
    conversations, four times the table's size). Here the body is the escaped rows, and the
    answer is read only for its ID."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.events.utilities import emit_event

    task_run = TaskRunContext.get()
    flow_run = FlowRunContext.get()
    artifact = {
        "type": "table",
        "key": key,
        "description": description,
        "task_run_id": str(task_run.task_run.id) if task_run else None,
        "flow_run_id": str(flow_run.flow_run.id) if flow_run and flow_run.flow_run else None,
        "data": rows_json,
    }
    body = json.dumps(artifact).encode()
    async with get_client() as client:
        # The client's own session: its auth, its base URL and its retries.
        response = await client._client.post(
            "/artifacts/", content=body, headers={"content-type": "application/json"}
        )
        del body
        found = _ARTIFACT_ID.search(response.content[:4096])
        del response
    if found is not None:
        emit_event(
            event="prefect.artifact.created",
            resource={
                "prefect.resource.id": f"prefect.artifact.{found.group(1).decode()}",
                "prefect.resource.name": key,
            },
            payload={"key": key, "type": "table", "description": description},
        )


async def _publish(
    summary: RunSummary,
    table: str,
    failing: list[ConversationResult],
    not_passed: list[Verdict],
    key: str,
) -> None:
    """The summary's figures, a row per conversation (``table``, JSON text), the comparison and
    the markdown report of failures (``failing``, the transcripts, and the verdicts of
    ``not_passed``), as Prefect artifacts (later runs read the first two: :mod:`.history`)."""
    description = f"{summary.suite}: run {summary.run_key}"
    figures: list[dict[str, Any]] = [
        {"metric": name, "value": value} for name, value in summary.figures().items()
    ]
    # Sent side by side: each is a round trip to the API, at the end of every run.
    sending = [
        acreate_table_artifact(
            table=[*figures, {"metric": RUN_KEY_ROW, "value": summary.run_key}],
            key=summary_key(summary.suite),
            description=description,
        ),
        _create_table_text(
            table, conversations_key(summary.suite), f"{description}: each conversation's verdict"
        ),
        acreate_markdown_artifact(
            markdown=markdown_report(summary, failing, not_passed),
            key=f"{key}-report",
            description=f"{summary.suite}: failures by cause, with their transcripts",
        ),
    ]
    if summary.comparison is not None:
        sending.append(
            acreate_markdown_artifact(
                markdown=comparison_markdown(summary.comparison),
                key=f"{key}-comparison",
                description=f"{description} {summary.comparison.line()}",
            )
        )
    if summary.output_path is not None:
        sending.append(
            acreate_markdown_artifact(
                markdown=(
                    f"# Output dataset of {summary.suite}\n\n{summary.output_rows} rows "
                    f"(one per conversation run) in `{summary.output_path}`: the "
                    "input row's columns, the named outputs, `conversation`, `status`, `reason` "
                    "and `output_notes`."
                ),
                key=f"{key}-output",
                description=f"{description}: where the output dataset is",
            )
        )
    await asyncio.gather(*sending)


__all__ = [
    "ended_with",
    "listening",
    "new_run_key",
    "run_batch",
    "select",
    "slug",
    "summarize",
]
