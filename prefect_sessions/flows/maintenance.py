"""The ``session-maintenance`` flow: stop over-age LiveAvatar sessions, delete idle Vectara
sessions and export transcripts of ended LiveAvatar sessions, or only report what would be done
(``dry_run``).

Deployed through the thin entrypoint ``flows/session_maintenance.py``. The logic and the
definitions of "age" and "idle" live in :mod:`prefect_sessions.maintenance`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from prefect import flow
from pydantic import Field

from prefect_sessions.liveavatar.credentials import LiveAvatarCredentials
from prefect_sessions.liveavatar.maintenance import (
    DEFAULT_LIVEAVATAR_POLICY,
    DEFAULT_TRANSCRIPT_EXPORT,
    LiveAvatarPolicy,
    TranscriptExport,
    liveavatar_step,
)
from prefect_sessions.maintenance import MaintenanceReport, MaintenanceStep, maintain_sessions
from prefect_sessions.vectara.credentials import VectaraCredentials
from prefect_sessions.vectara.maintenance import (
    DEFAULT_VECTARA_POLICY,
    VectaraPolicy,
    vectara_step,
)


# The report is persisted (JSON: session ids and actions, no secrets) so that it can be read back
# through the API too, e.g. from run_deployment's flow run.
@flow(name="session-maintenance", log_prints=False, persist_result=True, result_serializer="json")
async def session_maintenance(
    liveavatar_credentials: LiveAvatarCredentials | None = None,
    vectara_credentials: VectaraCredentials | None = None,
    liveavatar: LiveAvatarPolicy = DEFAULT_LIVEAVATAR_POLICY,
    vectara: VectaraPolicy = DEFAULT_VECTARA_POLICY,
    transcripts: TranscriptExport = DEFAULT_TRANSCRIPT_EXPORT,
    dry_run: bool = True,
    max_concurrency: Annotated[int, Field(ge=1, le=100)] = 8,
    as_of: datetime | None = None,
) -> MaintenanceReport:
    """Stop over-age LiveAvatar sessions, delete idle Vectara sessions, export transcripts of
    ended LiveAvatar sessions, and publish a summary artifact (key ``session-maintenance``).

    Args:
        liveavatar_credentials: LiveAvatar block; empty skips LiveAvatar.
        vectara_credentials: Vectara block; empty skips Vectara.
        liveavatar: Which active LiveAvatar sessions to stop, and the end reason to record.
        vectara: Which agents' sessions to sweep, and after how long idle to delete them.
        transcripts: Where transcripts of ended LiveAvatar sessions are exported.
        dry_run: Only report what would be stopped, deleted and exported; change nothing.
            On by default: a scheduled deployment turns it off explicitly.
        max_concurrency: Sessions handled at once per provider.
        as_of: Reference time for ages and idle times; empty means when the run starts.
    """
    steps: list[MaintenanceStep] = []
    if liveavatar_credentials is not None:
        steps.append(liveavatar_step(liveavatar_credentials, liveavatar, transcripts))
    if vectara_credentials is not None:
        steps.append(vectara_step(vectara_credentials, vectara))
    return await maintain_sessions(
        steps, dry_run=dry_run, max_concurrency=max_concurrency, as_of=as_of
    )
