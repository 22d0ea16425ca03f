"""Session maintenance: providers clean up what runs leave behind, or, in a dry run, only report
what they would do.

The steps belong to the providers (:mod:`prefect_sessions.liveavatar.maintenance` stops over-age
sessions and exports transcripts, :mod:`prefect_sessions.vectara.maintenance` deletes idle
sessions); :func:`maintain_sessions` runs them side by side and publishes the summary, and the
``session-maintenance`` flow (:mod:`prefect_sessions.flows.maintenance`) builds them from its
parameters.

A session is the unit of work: one Prefect task per session stopped, swept or exported, at most
``max_concurrency`` at a time per provider. One session's failure does not stop the others; the
run fails at the end, after the summary artifact, if any did.
"""

from prefect_sessions.maintenance.report import SUMMARY_ARTIFACT_KEY, summary_markdown, totals
from prefect_sessions.maintenance.run import check_steps, maintain_sessions
from prefect_sessions.seam.maintenance import (
    MaintenanceError,
    MaintenanceReport,
    MaintenanceStep,
    SessionAction,
)

__all__ = [
    "SUMMARY_ARTIFACT_KEY",
    "MaintenanceError",
    "MaintenanceReport",
    "MaintenanceStep",
    "SessionAction",
    "check_steps",
    "maintain_sessions",
    "summary_markdown",
    "totals",
]
