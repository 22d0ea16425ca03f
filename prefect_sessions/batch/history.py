"""Earlier runs of a suite, found through the Prefect API: the baseline to compare with, the
failures to rerun, the pass rate over recent nights.

A batch run tags its flow run ``suite:<suite>`` and ``run-key:<key>`` and publishes two table
artifacts: the summary's figures and one row per conversation. Both live in Prefect's database,
so a run on one worker finds the baseline a run on another worker left, with no shared disk.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import FlowRunContext
from pydantic import BaseModel

from prefect_sessions.batch.chunks import slug
from prefect_sessions.batch.comparison import RunRecord
from prefect_sessions.errors import ConfigurationError

#: Runs looked at when searching for one with a readable record (a stopped run has none).
SEARCH_LIMIT = 20


def suite_tag(suite_name: str) -> str:
    return f"suite:{slug(suite_name)}"


def run_tag(run_key: str) -> str:
    return f"run-key:{run_key}"


def summary_key(suite_name: str) -> str:
    """The artifact key of a suite's summary table."""
    return f"{slug(suite_name)}-summary"


def conversations_key(suite_name: str) -> str:
    """The artifact key of a suite's per-conversation table."""
    return f"{slug(suite_name)}-conversations"


async def tag_this_run(suite_name: str, run_key: str) -> str | None:
    """Tag the current flow run so later runs find it; its id (None outside a flow run)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    flow_run = context.flow_run
    tags = list(dict.fromkeys([*flow_run.tags, suite_tag(suite_name), run_tag(run_key)]))
    async with get_client() as client:
        await client.update_flow_run(flow_run.id, tags=tags)
    return str(flow_run.id)


def _rows(data: Any) -> list[dict[str, Any]]:
    """A table artifact's rows (the API hands them back as a JSON string)."""
    rows = json.loads(data) if isinstance(data, str) else data
    return [row for row in rows or [] if isinstance(row, dict)]


def _key_of_run(flow_run: FlowRun) -> str:
    tag = next((t for t in flow_run.tags if t.startswith("run-key:")), None)
    return tag.removeprefix("run-key:") if tag else flow_run.name


async def _finished_runs(
    suite_name: str, run_key: str | None, limit: int, exclude_run_key: str | None = None
) -> list[FlowRun]:
    """The suite's finished flow runs (of ``run_key`` only, if given), newest first, without the
    runs of ``exclude_run_key`` (the current run's earlier attempts)."""
    tags = [suite_tag(suite_name)] + ([run_tag(run_key)] if run_key else [])
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=tags),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.COMPLETED, StateType.FAILED])
                ),
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=limit,
        )
    return [run for run in runs if exclude_run_key is None or _key_of_run(run) != exclude_run_key]


async def _tables(suite_name: str, runs: list[FlowRun]) -> dict[tuple[UUID, str], Any]:
    """``{(flow run id, artifact key): rows}`` of the runs' summary and conversation tables."""
    if not runs:
        return {}
    keys = [summary_key(suite_name), conversations_key(suite_name)]
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id for run in runs]),
                key=ArtifactFilterKey(any_=keys),
            )
        )
    return {
        (artifact.flow_run_id, artifact.key): artifact.data
        for artifact in artifacts
        if artifact.flow_run_id is not None and artifact.key is not None
    }


async def find_record(
    suite_name: str, run_key: str | None = None, *, exclude_run_key: str | None = None
) -> RunRecord | None:
    """The record of the latest finished run of a suite (with ``run_key``, of that run; a
    resumed run shares its key with the attempts before it), or None; never one of
    ``exclude_run_key`` (the current run's earlier attempts)."""
    runs = await _finished_runs(suite_name, run_key, SEARCH_LIMIT, exclude_run_key)
    tables = await _tables(suite_name, runs)
    for flow_run in runs:
        summary = tables.get((flow_run.id, summary_key(suite_name)))
        conversations = tables.get((flow_run.id, conversations_key(suite_name)))
        if summary is None or conversations is None:
            continue  # stopped before it published: not a baseline
        figures: dict[str, float] = {}
        for row in _rows(summary):
            value = row.get("value")
            if isinstance(value, int | float) and not isinstance(value, bool):
                figures[str(row.get("metric"))] = float(value)
        statuses = {
            str(row["id"]): row["status"]
            for row in _rows(conversations)
            if row.get("status") in ("passed", "failed", "errored") and "id" in row
        }
        return RunRecord(
            run_key=_key_of_run(flow_run),
            flow_run_id=str(flow_run.id),
            statuses=statuses,
            figures=figures,
        )
    return None


async def require_record(suite_name: str, run_key: str, what: str) -> RunRecord:
    """The record of run ``run_key``, or a ConfigurationError naming ``what`` asked for it."""
    record = await find_record(suite_name, run_key)
    if record is None:
        raise ConfigurationError(
            f"{what}: no finished run of suite {suite_name!r} has run key {run_key!r} in this "
            "Prefect API; give the key of an earlier run (its flow run is tagged "
            f"{run_tag(run_key)!r}), or 'last'"
        )
    return record


class PastRun(BaseModel):
    """One point of the pass rate over recent runs."""

    run_key: str
    started: datetime | None
    passed: float
    conversations: float

    @property
    def pass_rate(self) -> float:
        return self.passed / self.conversations if self.conversations else 0.0


async def recent_runs(
    suite_name: str, limit: int = 20, *, exclude_run_key: str | None = None
) -> list[PastRun]:
    """The suite's latest finished runs with a summary, oldest first (without those of
    ``exclude_run_key``: the run a report is about)."""
    runs = await _finished_runs(suite_name, None, limit, exclude_run_key)
    tables = await _tables(suite_name, runs)
    past: list[PastRun] = []
    for flow_run in runs:
        summary = tables.get((flow_run.id, summary_key(suite_name)))
        if summary is None:
            continue
        figures = {row.get("metric"): row.get("value") for row in _rows(summary)}
        past.append(
            PastRun(
                run_key=_key_of_run(flow_run),
                started=flow_run.start_time,
                passed=float(figures.get("passed") or 0),
                conversations=float(figures.get("conversations") or 0),
            )
        )
    return list(reversed(past))
