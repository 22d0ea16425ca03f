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
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import ArtifactSort
from prefect.context import FlowRunContext
from pydantic import BaseModel

from prefect_sessions.batch.chunks import slug
from prefect_sessions.batch.comparison import RunRecord
from prefect_sessions.errors import ConfigurationError

#: Runs looked at when searching for one with a readable record (a stopped run has none).
SEARCH_LIMIT = 20
#: The summary table's row that names the run (later runs find their baseline's key there).
RUN_KEY_ROW = "run_key"


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


def run_tags(suite_name: str, run_key: str) -> list[str]:
    """The tags a batch run's flow run carries, so later runs find it."""
    return [suite_tag(suite_name), run_tag(run_key)]


async def tag_this_run(suite_name: str, run_key: str) -> str | None:
    """Tag the current flow run so later runs find it (a request only when it was not created
    with the tags, as the command line creates it); its id (None outside a flow run)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    flow_run = context.flow_run
    wanted = run_tags(suite_name, run_key)
    if not set(wanted) <= set(flow_run.tags):
        async with get_client() as client:
            await client.update_flow_run(
                flow_run.id, tags=list(dict.fromkeys([*flow_run.tags, *wanted]))
            )
    return str(flow_run.id)


def _rows(data: Any) -> list[dict[str, Any]]:
    """A table artifact's rows (the API hands them back as a JSON string)."""
    rows = json.loads(data) if isinstance(data, str) else data
    return [row for row in rows or [] if isinstance(row, dict)]


class _Published(BaseModel):
    """What one finished run published: its summary's rows and its conversations' rows."""

    flow_run_id: UUID
    created: datetime | None = None
    summary: list[dict[str, Any]] | None = None
    conversations: list[dict[str, Any]] | None = None
    description: str = ""

    @property
    def run_key(self) -> str:
        for row in self.summary or []:
            if row.get("metric") == RUN_KEY_ROW:
                return str(row.get("value"))
        # Runs published before the summary carried its key: "<suite>: run <key>".
        return self.description.rpartition(": run ")[2]

    def figures(self) -> dict[str, float]:
        figures: dict[str, float] = {}
        for row in self.summary or []:
            value = row.get("value")
            if isinstance(value, int | float) and not isinstance(value, bool):
                figures[str(row.get("metric"))] = float(value)
        return figures


async def _published(
    suite_name: str, run_key: str | None, limit: int, exclude_run_key: str | None = None
) -> list[_Published]:
    """The summary and conversation tables of the suite's finished flow runs (of ``run_key``
    only, if given), newest first, in one request; never those of ``exclude_run_key`` (the
    current run's earlier attempts)."""
    tags = [suite_tag(suite_name)] + ([run_tag(run_key)] if run_key else [])
    keys = {summary_key(suite_name): "summary", conversations_key(suite_name): "conversations"}
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys))),
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=tags),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.COMPLETED, StateType.FAILED])
                ),
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=2 * limit,
        )
    runs: dict[UUID, _Published] = {}
    for artifact in artifacts:
        if artifact.flow_run_id is None or artifact.key not in keys:
            continue
        run = runs.setdefault(artifact.flow_run_id, _Published(flow_run_id=artifact.flow_run_id))
        setattr(run, keys[artifact.key], _rows(artifact.data))
        if keys[artifact.key] == "summary":
            run.created, run.description = artifact.created, artifact.description or ""
    return [
        run
        for run in runs.values()
        if run.summary is not None and (exclude_run_key is None or run.run_key != exclude_run_key)
    ][:limit]


async def find_record(
    suite_name: str, run_key: str | None = None, *, exclude_run_key: str | None = None
) -> RunRecord | None:
    """The record of the latest finished run of a suite (with ``run_key``, of that run; a
    resumed run shares its key with the attempts before it), or None; never one of
    ``exclude_run_key`` (the current run's earlier attempts). One request to the API."""
    for run in await _published(suite_name, run_key, SEARCH_LIMIT, exclude_run_key):
        if run.conversations is None:
            continue  # stopped before it published: not a baseline
        statuses = {
            str(row["id"]): row["status"]
            for row in run.conversations
            if row.get("status") in ("passed", "failed", "errored") and "id" in row
        }
        scores = {
            str(row["id"]): float(row["judge_score"])
            for row in run.conversations
            if isinstance(row.get("judge_score"), int | float) and "id" in row
        }
        return RunRecord(
            run_key=run.run_key,
            flow_run_id=str(run.flow_run_id),
            statuses=statuses,
            figures=run.figures(),
            scores=scores,
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
    ``exclude_run_key``: the run a report is about). One request to the API."""
    past = [
        PastRun(
            run_key=run.run_key,
            started=run.created,
            passed=run.figures().get("passed", 0.0),
            conversations=run.figures().get("conversations", 0.0),
        )
        for run in await _published(suite_name, None, limit, exclude_run_key)
    ]
    return list(reversed(past))
