"""A maintenance run: check every provider step's settings, run the steps side by side, publish
the summary artifact, and fail at the end if any session could not be handled."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone

from prefect.artifacts import acreate_markdown_artifact

from prefect_sessions.errors import ConfigurationError
from prefect_sessions.logs import run_logger
from prefect_sessions.maintenance.report import SUMMARY_ARTIFACT_KEY, summary_markdown, totals
from prefect_sessions.seam.maintenance import (
    MaintenanceError,
    MaintenanceReport,
    MaintenanceStep,
    as_utc,
)


def check_steps(steps: Sequence[MaintenanceStep], max_concurrency: int) -> None:
    """Refuse settings that cannot work, before any request, naming every problem.

    Raises:
        ConfigurationError: listing each problem and its fix.
    """
    problems = [problem for step in steps for problem in step.problems]
    if not steps:
        problems.append("nothing to maintain: choose the credentials of at least one provider")
    if not 1 <= max_concurrency <= 100:
        problems.append(f"max_concurrency must be 1 to 100, got {max_concurrency}")
    if problems:
        raise ConfigurationError("; ".join(problems))


async def maintain_sessions(
    steps: Sequence[MaintenanceStep],
    *,
    dry_run: bool = True,
    max_concurrency: int = 8,
    as_of: datetime | None = None,
) -> MaintenanceReport:
    """Run the providers' maintenance steps inside a flow and publish the summary artifact.

    Settings are checked before any request. The steps run side by side, each with at most
    ``max_concurrency`` sessions in flight.

    Raises:
        ConfigurationError: the settings cannot work (before anything is done).
        MaintenanceError: some sessions failed; the report artifact lists them.
    """
    check_steps(steps, max_concurrency)
    moment = as_utc(as_of) if as_of is not None else datetime.now(timezone.utc)
    report = MaintenanceReport(as_of=moment, dry_run=dry_run)
    # return_exceptions: a listing that fails on one provider must not hide the other's report.
    outcomes = await asyncio.gather(
        *(step.run(report, moment, dry_run, max_concurrency) for step in steps),
        return_exceptions=True,
    )
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    await acreate_markdown_artifact(
        summary_markdown(report, errors),
        key=SUMMARY_ARTIFACT_KEY,
        description="Sessions stopped, deleted and exported by session maintenance",
    )
    run_logger().info("%s", totals(report))
    if errors:
        raise errors[0]
    if report.failed:
        raise MaintenanceError(
            f"{len(report.failed)} of {len(report.actions)} session actions failed; see the "
            f"'{SUMMARY_ARTIFACT_KEY}' artifact (first: {report.failed[0].detail})"
        )
    return report
