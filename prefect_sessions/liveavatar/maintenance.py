"""LiveAvatar's maintenance step: stop active sessions beyond a maximum age, and export the
transcripts of ended sessions (to JSON files or markdown artifacts).

Definitions, from what the API gives:

- A session's **age** is ``as_of - created_at`` (when its token was minted). The list gives no
  start time, and its ``duration`` is measured on the provider's clock, not ours.
- A session is **ended** when it is in the ``historic`` list; it is exported when it ended within
  ``ended_within_hours`` of ``as_of`` and was not exported before (the file or the artifact key
  exists).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from pydantic import BaseModel, ConfigDict, Field

from prefect_sessions.liveavatar import tasks as liveavatar_tasks
from prefect_sessions.liveavatar.credentials import LiveAvatarCredentials
from prefect_sessions.liveavatar.models import SessionEndReason, SessionEntry, Transcript
from prefect_sessions.logs import run_logger
from prefect_sessions.seam.maintenance import (
    MaintenanceReport,
    MaintenanceStep,
    SessionAction,
    as_utc,
    duration_text,
    each_session,
    failed_action,
)

TRANSCRIPT_KEY_PREFIX = "liveavatar-transcript-"


class LiveAvatarPolicy(BaseModel):
    """Which active LiveAvatar sessions to stop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stop_over_age: bool = Field(
        default=True, description="Stop active sessions older than max_age_minutes."
    )
    max_age_minutes: float = Field(
        default=60.0, gt=0, description="Age beyond which an active session is stopped."
    )
    end_reason: SessionEndReason = Field(
        default="MAX_DURATION_REACHED",
        description="End reason recorded on each stopped session.",
    )


class TranscriptExport(BaseModel):
    """Where transcripts of ended LiveAvatar sessions go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="Export transcripts of ended sessions.")
    destination: Literal["artifact", "file"] = Field(
        default="artifact",
        description=(
            "artifact: one markdown artifact per session (key liveavatar-transcript-<id>); "
            "file: one JSON file per session in directory."
        ),
    )
    directory: str = Field(
        default="transcripts",
        min_length=1,
        description="Folder for JSON files, on the machine that runs the flow.",
    )
    ended_within_hours: float | None = Field(
        default=24.0,
        gt=0,
        description="Only sessions that ended this recently. Empty exports every ended session.",
    )


DEFAULT_LIVEAVATAR_POLICY = LiveAvatarPolicy()
DEFAULT_TRANSCRIPT_EXPORT = TranscriptExport()


def session_age(entry: SessionEntry, as_of: datetime) -> timedelta:
    """A LiveAvatar session's age: ``as_of`` minus when its token was minted."""
    return as_utc(as_of) - as_utc(entry.created_at)


def transcript_markdown(entry: SessionEntry, transcript: Transcript) -> str:
    """A transcript as a markdown table, for a Prefect artifact."""
    lines = [
        f"# LiveAvatar session {entry.id}",
        "",
        f"Mode {entry.mode}, created {entry.created_at.isoformat(timespec='seconds')}, "
        f"ended {entry.end_at.isoformat(timespec='seconds') if entry.end_at else 'unknown'} "
        f"({entry.end_reason or 'no reason given'}), {len(transcript.entries)} utterances.",
        "",
        "| time (s) | role | said |",
        "|---:|---|---|",
    ]
    for line in transcript.entries:
        said = line.transcript.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {line.relative_timestamp} | {line.role} | {said} |")
    return "\n".join(lines)


def transcript_file(directory: str | Path, session_id: str) -> Path:
    """Where a session's transcript is written with ``destination="file"``."""
    return Path(directory) / f"liveavatar-{session_id}.json"


def _write_atomically(path: Path, text: str) -> None:
    # A half-written file would count as exported on the next run: write aside, then rename.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


@task(name="export LiveAvatar transcript", cache_policy=NO_CACHE)
async def export_transcript(
    credentials: LiveAvatarCredentials, entry: SessionEntry, export: TranscriptExport
) -> SessionAction:
    """Fetch an ended LiveAvatar session's transcript and write it to a JSON file or a markdown
    artifact."""
    async with credentials.get_client() as client:
        transcript = await client.get_transcript(entry.id)
    if export.destination == "file":
        path = transcript_file(export.directory, entry.id)
        document = {
            "session": entry.model_dump(mode="json"),
            "transcript": [line.model_dump(mode="json") for line in transcript.entries],
        }
        _write_atomically(path, json.dumps(document, indent=2, ensure_ascii=False))
        where = str(path)
    else:
        key = f"{TRANSCRIPT_KEY_PREFIX}{entry.id}"
        await acreate_markdown_artifact(
            transcript_markdown(entry, transcript),
            key=key,
            description=f"Transcript of LiveAvatar session {entry.id}",
        )
        where = f"artifact {key}"
    run_logger().info(
        "Exported %d transcript entries of LiveAvatar session %s to %s",
        len(transcript.entries),
        entry.id,
        where,
    )
    return SessionAction(
        provider="LiveAvatar",
        action="export",
        session=entry.id,
        outcome="done",
        detail=f"{len(transcript.entries)} entries to {where}",
    )


async def _stop_over_age(
    credentials: LiveAvatarCredentials,
    policy: LiveAvatarPolicy,
    as_of: datetime,
    dry_run: bool,
    max_concurrency: int,
    report: MaintenanceReport,
) -> list[SessionEntry]:
    """Stop the over-age active sessions; returns them (in a dry run, those it would stop)."""
    active = await liveavatar_tasks.alist_sessions(credentials, "active")
    report.checked["LiveAvatar active sessions"] = len(active)
    max_age = timedelta(minutes=policy.max_age_minutes)
    over_age = [entry for entry in active if session_age(entry, as_of) > max_age]

    async def stop(entry: SessionEntry) -> SessionAction:
        detail = f"age {duration_text(session_age(entry, as_of))}, reason {policy.end_reason}"
        if not dry_run:
            await liveavatar_tasks.astop_session(credentials, entry.id, policy.end_reason)
        return SessionAction(
            provider="LiveAvatar",
            action="stop",
            session=entry.id,
            outcome="dry run" if dry_run else "done",
            detail=detail,
        )

    report.actions.extend(
        await each_session(
            over_age,
            stop,
            lambda entry, exc: failed_action("LiveAvatar", "stop", entry.id, exc),
            max_concurrency,
        )
    )
    return over_age


async def _exported_keys(keys: Sequence[str]) -> set[str]:
    if not keys:
        return set()
    async with get_client() as prefect:
        found = await prefect.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(
                key=ArtifactCollectionFilterKey(any_=list(keys))
            )
        )
    return {artifact.key for artifact in found if artifact.key}


async def _export_transcripts(
    credentials: LiveAvatarCredentials,
    export: TranscriptExport,
    as_of: datetime,
    dry_run: bool,
    max_concurrency: int,
    stopping: Sequence[SessionEntry],
    report: MaintenanceReport,
) -> None:
    historic = await liveavatar_tasks.alist_sessions(credentials, "historic")
    report.checked["LiveAvatar ended sessions"] = len(historic)
    window = (
        timedelta(hours=export.ended_within_hours)
        if export.ended_within_hours is not None
        else None
    )
    candidates = [
        entry
        for entry in historic
        if window is None or (entry.end_at is not None and as_of - as_utc(entry.end_at) <= window)
    ]
    if dry_run:
        # A real run would stop these first, and they would then have ended just now.
        known = {entry.id for entry in candidates}
        candidates += [entry for entry in stopping if entry.id not in known]
    if export.destination == "file":
        done = {e.id for e in candidates if transcript_file(export.directory, e.id).exists()}
    else:
        keys = [f"{TRANSCRIPT_KEY_PREFIX}{entry.id}" for entry in candidates]
        exported = await _exported_keys(keys)
        done = {
            entry.id for entry in candidates if f"{TRANSCRIPT_KEY_PREFIX}{entry.id}" in exported
        }
    # Already exported sessions are not listed: every scheduled run would repeat them.
    pending = [entry for entry in candidates if entry.id not in done]
    report.checked["LiveAvatar transcripts already exported"] = len(done)
    if dry_run:
        target = "artifact" if export.destination == "artifact" else f"{export.directory}/"
        report.actions.extend(
            SessionAction(
                provider="LiveAvatar",
                action="export",
                session=entry.id,
                outcome="dry run",
                detail=f"to {target}",
            )
            for entry in pending
        )
        return
    report.actions.extend(
        await each_session(
            pending,
            lambda entry: export_transcript(credentials, entry, export),
            lambda entry, exc: failed_action("LiveAvatar", "export", entry.id, exc),
            max_concurrency,
        )
    )


async def _liveavatar(
    credentials: LiveAvatarCredentials,
    policy: LiveAvatarPolicy,
    export: TranscriptExport,
    as_of: datetime,
    dry_run: bool,
    max_concurrency: int,
    report: MaintenanceReport,
) -> None:
    stopping: list[SessionEntry] = []
    if policy.stop_over_age:
        stopping = await _stop_over_age(
            credentials, policy, as_of, dry_run, max_concurrency, report
        )
    # After stopping, so the sessions just stopped are exported in the same run.
    if export.enabled:
        await _export_transcripts(
            credentials, export, as_of, dry_run, max_concurrency, stopping, report
        )


def liveavatar_step(
    credentials: LiveAvatarCredentials,
    policy: LiveAvatarPolicy = DEFAULT_LIVEAVATAR_POLICY,
    transcripts: TranscriptExport = DEFAULT_TRANSCRIPT_EXPORT,
) -> MaintenanceStep:
    """LiveAvatar's part of a maintenance run: stop over-age sessions, then export transcripts."""
    problems: list[str] = []
    if not (policy.stop_over_age or transcripts.enabled):
        problems.append(
            "liveavatar_credentials is set but both liveavatar.stop_over_age and "
            "transcripts.enabled are off: turn one on or clear the credentials"
        )

    async def run(
        report: MaintenanceReport, as_of: datetime, dry_run: bool, max_concurrency: int
    ) -> None:
        await _liveavatar(credentials, policy, transcripts, as_of, dry_run, max_concurrency, report)

    return MaintenanceStep(tuple(problems), run)
