"""Session maintenance: stop LiveAvatar sessions active beyond a maximum age, delete Vectara
sessions idle beyond a threshold, export transcripts of ended LiveAvatar sessions; or, in a dry
run, only report what would be done.

``flows/session_maintenance.py`` is the deployable flow; this module holds its settings (pydantic
models the Prefect UI renders as forms), the per-session tasks and :func:`maintain_sessions`,
which must run inside a flow.

Definitions, from what the APIs give:

- A LiveAvatar session's **age** is ``as_of - created_at`` (when its token was minted). The list
  gives no start time, and its ``duration`` is measured on the provider's clock, not ours.
- A Vectara session is **idle since** its latest event's ``created_at``, else (no events) its own
  ``created_at``. A session with neither timestamp is never deleted.
- A LiveAvatar session is **ended** when it is in the ``historic`` list; it is exported when it
  ended within ``ended_within_hours`` of ``as_of`` and was not exported before (the file or the
  artifact key exists).

A session is the unit of work: one Prefect task per session stopped, swept or exported, at most
``max_concurrency`` at a time per provider. One session's failure does not stop the others; the
run fails at the end, after the summary artifact, if any did.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal, TypeVar

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from prefect_sessions.errors import ConfigurationError, PrefectSessionsError
from prefect_sessions.liveavatar import tasks as liveavatar_tasks
from prefect_sessions.liveavatar.credentials import LiveAvatarCredentials
from prefect_sessions.liveavatar.models import SessionEndReason, SessionEntry, Transcript
from prefect_sessions.logs import run_logger
from prefect_sessions.vectara import tasks as vectara_tasks
from prefect_sessions.vectara.credentials import VectaraCredentials
from prefect_sessions.vectara.models import AgentEvent, AgentSession

T = TypeVar("T")

SUMMARY_ARTIFACT_KEY = "session-maintenance"
TRANSCRIPT_KEY_PREFIX = "liveavatar-transcript-"

# -- settings: flow parameters, rendered as forms by the Prefect UI ------------------------------


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


class VectaraPolicy(BaseModel):
    """Which Vectara sessions to delete."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delete_idle: bool = Field(
        default=True, description="Delete sessions idle for longer than max_idle_hours."
    )
    agent_keys: list[str] = Field(
        default_factory=list,
        description="Keys of the agents whose sessions are swept, e.g. agt_support.",
    )
    max_idle_hours: float = Field(
        default=168.0,
        gt=0,
        description="Hours since the latest event (or creation) after which a session is idle.",
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
DEFAULT_VECTARA_POLICY = VectaraPolicy()
DEFAULT_TRANSCRIPT_EXPORT = TranscriptExport()

# -- the report ----------------------------------------------------------------------------------

Action = Literal["stop", "delete", "export"]
Outcome = Literal["done", "dry run", "skipped", "failed"]


class SessionAction(BaseModel):
    """What was (or, in a dry run, would be) done to one session."""

    model_config = ConfigDict(frozen=True)

    provider: Literal["LiveAvatar", "Vectara"]
    action: Action
    session: str = Field(description="LiveAvatar session ID or Vectara session key.")
    agent_key: str | None = None
    outcome: Outcome
    detail: str = ""


class MaintenanceReport(BaseModel):
    """Everything one run checked and did."""

    as_of: datetime
    dry_run: bool
    checked: dict[str, int] = Field(default_factory=dict)
    actions: list[SessionAction] = Field(default_factory=list)

    def of(self, action: Action, *outcomes: Outcome) -> list[SessionAction]:
        """The actions of one kind, optionally only those with one of ``outcomes``."""
        return [
            item
            for item in self.actions
            if item.action == action and (not outcomes or item.outcome in outcomes)
        ]

    @property
    def failed(self) -> list[SessionAction]:
        return [item for item in self.actions if item.outcome == "failed"]


class MaintenanceError(PrefectSessionsError):
    """Some sessions could not be stopped, deleted or exported (the others were)."""


# -- definitions ---------------------------------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def session_age(entry: SessionEntry, as_of: datetime) -> timedelta:
    """A LiveAvatar session's age: ``as_of`` minus when its token was minted."""
    return as_utc(as_of) - as_utc(entry.created_at)


_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def _event_time(event: AgentEvent) -> datetime | None:
    value = getattr(event, "created_at", None)
    if value is None and event.model_extra:
        # An event type this package does not model keeps its fields as extras (strings).
        value = event.model_extra.get("created_at")
    if value is None:
        return None
    try:
        return as_utc(_DATETIME.validate_python(value))
    except ValidationError:
        return None


def idle_since(session: AgentSession, events: Sequence[AgentEvent]) -> datetime | None:
    """When a Vectara session was last used: its latest event, else its creation; ``None`` if the
    API gave neither time."""
    times = [moment for moment in map(_event_time, events) if moment is not None]
    if times:
        return max(times)
    return as_utc(session.created_at) if session.created_at is not None else None


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _failure(exc: BaseException) -> str:
    # The package's errors never carry secrets (see prefect_sessions.errors); keep the message
    # short for a table cell.
    return f"{type(exc).__name__}: {str(exc)[:300]}"


# -- per-session tasks ---------------------------------------------------------------------------


@task(name="sweep Vectara session", cache_policy=NO_CACHE)
async def sweep_vectara_session(
    credentials: VectaraCredentials,
    agent_key: str,
    session: AgentSession,
    idle_cutoff: datetime,
    dry_run: bool = True,
) -> SessionAction:
    """Read a Vectara session's events and delete the session if it has been idle since before
    ``idle_cutoff`` (in a dry run, only say so)."""
    async with credentials.get_client() as client:
        events: list[AgentEvent] = []
        pages = client.list_events(agent_key, session.key, page_size=100)
        async with aclosing(pages):
            async for event in pages:
                events.append(event)
        since = idle_since(session, events)
        if since is None:
            return SessionAction(
                provider="Vectara",
                action="delete",
                session=session.key,
                agent_key=agent_key,
                outcome="skipped",
                detail="no event or creation time to tell how long it has been idle",
            )
        if since >= idle_cutoff:
            return SessionAction(
                provider="Vectara",
                action="delete",
                session=session.key,
                agent_key=agent_key,
                outcome="skipped",
                detail=f"in use: last activity {since.isoformat(timespec='seconds')}",
            )
        detail = f"idle since {since.isoformat(timespec='seconds')} ({len(events)} events)"
        if not dry_run:
            # missing_ok: a session someone deleted meanwhile is the outcome we wanted.
            await client.delete_session(agent_key, session.key, missing_ok=True)
    run_logger().info(
        "%s Vectara session %s of agent %s, %s",
        "Would delete" if dry_run else "Deleted",
        session.key,
        agent_key,
        detail,
    )
    return SessionAction(
        provider="Vectara",
        action="delete",
        session=session.key,
        agent_key=agent_key,
        outcome="dry run" if dry_run else "done",
        detail=detail,
    )


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


# -- the run -------------------------------------------------------------------------------------


async def _bounded(
    limit: asyncio.Semaphore,
    work: Callable[[], Awaitable[SessionAction]],
    on_error: Callable[[BaseException], SessionAction],
) -> SessionAction:
    async with limit:
        try:
            return await work()
        except Exception as exc:
            return on_error(exc)


async def _each(
    items: Sequence[T],
    work: Callable[[T], Awaitable[SessionAction]],
    on_error: Callable[[T, BaseException], SessionAction],
    max_concurrency: int,
) -> list[SessionAction]:
    """Run ``work`` for every item, at most ``max_concurrency`` at a time; a failure becomes that
    item's action instead of stopping the others."""
    limit = asyncio.Semaphore(max_concurrency)

    def one(item: T) -> Awaitable[SessionAction]:
        return _bounded(limit, lambda: work(item), lambda exc: on_error(item, exc))

    return list(await asyncio.gather(*(one(item) for item in items)))


def _failed(
    provider: Literal["LiveAvatar", "Vectara"],
    action: Action,
    session: str,
    exc: BaseException,
    agent_key: str | None = None,
) -> SessionAction:
    return SessionAction(
        provider=provider,
        action=action,
        session=session,
        agent_key=agent_key,
        outcome="failed",
        detail=_failure(exc),
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
        detail = f"age {_duration(session_age(entry, as_of))}, reason {policy.end_reason}"
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
        await _each(
            over_age,
            stop,
            lambda entry, exc: _failed("LiveAvatar", "stop", entry.id, exc),
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
        await _each(
            pending,
            lambda entry: export_transcript(credentials, entry, export),
            lambda entry, exc: _failed("LiveAvatar", "export", entry.id, exc),
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


async def _vectara(
    credentials: VectaraCredentials,
    policy: VectaraPolicy,
    as_of: datetime,
    dry_run: bool,
    max_concurrency: int,
    report: MaintenanceReport,
) -> None:
    cutoff = as_of - timedelta(hours=policy.max_idle_hours)
    work: list[tuple[str, AgentSession]] = []
    for agent_key in policy.agent_keys:
        sessions = await vectara_tasks.alist_sessions(credentials, agent_key)
        work += [(agent_key, session) for session in sessions]
    report.checked["Vectara sessions"] = len(work)

    async def sweep(item: tuple[str, AgentSession]) -> SessionAction:
        agent_key, session = item
        return await sweep_vectara_session(credentials, agent_key, session, cutoff, dry_run)

    actions = await _each(
        work,
        sweep,
        lambda item, exc: _failed("Vectara", "delete", item[1].key, exc, agent_key=item[0]),
        max_concurrency,
    )
    # Sessions in use are counted, not listed: the table is about what changes.
    report.actions.extend(action for action in actions if action.outcome != "skipped")
    report.checked["Vectara sessions in use"] = sum(a.outcome == "skipped" for a in actions)


def _check_settings(
    liveavatar_credentials: LiveAvatarCredentials | None,
    vectara_credentials: VectaraCredentials | None,
    liveavatar: LiveAvatarPolicy,
    vectara: VectaraPolicy,
    transcripts: TranscriptExport,
    max_concurrency: int,
) -> None:
    problems = []
    liveavatar_work = liveavatar.stop_over_age or transcripts.enabled
    if liveavatar_credentials is None and vectara_credentials is None:
        problems.append(
            "nothing to maintain: choose liveavatar_credentials, vectara_credentials or both"
        )
    if vectara_credentials is not None and vectara.delete_idle and not vectara.agent_keys:
        problems.append(
            "vectara.agent_keys is empty: list the agents whose sessions to sweep, "
            "e.g. ['agt_support'], or turn vectara.delete_idle off"
        )
    if vectara_credentials is not None and not vectara.delete_idle:
        problems.append(
            "vectara_credentials is set but vectara.delete_idle is off: turn it on or clear "
            "the credentials"
        )
    if liveavatar_credentials is not None and not liveavatar_work:
        problems.append(
            "liveavatar_credentials is set but both liveavatar.stop_over_age and "
            "transcripts.enabled are off: turn one on or clear the credentials"
        )
    if not 1 <= max_concurrency <= 100:
        problems.append(f"max_concurrency must be 1 to 100, got {max_concurrency}")
    if problems:
        raise ConfigurationError("; ".join(problems))


async def maintain_sessions(
    *,
    liveavatar_credentials: LiveAvatarCredentials | None = None,
    vectara_credentials: VectaraCredentials | None = None,
    liveavatar: LiveAvatarPolicy = DEFAULT_LIVEAVATAR_POLICY,
    vectara: VectaraPolicy = DEFAULT_VECTARA_POLICY,
    transcripts: TranscriptExport = DEFAULT_TRANSCRIPT_EXPORT,
    dry_run: bool = True,
    max_concurrency: int = 8,
    as_of: datetime | None = None,
) -> MaintenanceReport:
    """Run the maintenance inside a flow and publish the summary artifact.

    Settings are checked before any request. LiveAvatar and Vectara are maintained side by side,
    each with at most ``max_concurrency`` sessions in flight.

    Raises:
        ConfigurationError: the settings cannot work (before anything is done).
        MaintenanceError: some sessions failed; the report artifact lists them.
    """
    _check_settings(
        liveavatar_credentials,
        vectara_credentials,
        liveavatar,
        vectara,
        transcripts,
        max_concurrency,
    )
    moment = as_utc(as_of) if as_of is not None else datetime.now(timezone.utc)
    report = MaintenanceReport(as_of=moment, dry_run=dry_run)
    work: list[Awaitable[None]] = []
    if liveavatar_credentials is not None:
        work.append(
            _liveavatar(
                liveavatar_credentials,
                liveavatar,
                transcripts,
                moment,
                dry_run,
                max_concurrency,
                report,
            )
        )
    if vectara_credentials is not None and vectara.delete_idle:
        work.append(
            _vectara(vectara_credentials, vectara, moment, dry_run, max_concurrency, report)
        )
    # return_exceptions: a listing that fails on one provider must not hide the other's report.
    outcomes = await asyncio.gather(*work, return_exceptions=True)
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    await acreate_markdown_artifact(
        summary_markdown(report, errors),
        key=SUMMARY_ARTIFACT_KEY,
        description="Sessions stopped, deleted and exported by session maintenance",
    )
    run_logger().info("%s", _totals(report))
    if errors:
        raise errors[0]
    if report.failed:
        raise MaintenanceError(
            f"{len(report.failed)} of {len(report.actions)} session actions failed; see the "
            f"'{SUMMARY_ARTIFACT_KEY}' artifact (first: {report.failed[0].detail})"
        )
    return report


def _totals(report: MaintenanceReport) -> str:
    stop, delete, export = (
        len(report.of(action, "done", "dry run")) for action in ("stop", "delete", "export")
    )
    failed = f", {len(report.failed)} failed" if report.failed else ""
    if report.dry_run:
        return (
            f"Would stop {stop} LiveAvatar sessions, delete {delete} Vectara sessions and "
            f"export {export} transcripts{failed}"
        )
    return (
        f"Stopped {stop} LiveAvatar sessions, deleted {delete} Vectara sessions and exported "
        f"{export} transcripts{failed}"
    )


def summary_markdown(report: MaintenanceReport, errors: Sequence[BaseException] = ()) -> str:
    """The summary artifact: counts, then one table row per session acted on."""
    mode = "Dry run: nothing was changed" if report.dry_run else "Changes made"
    lines = [
        f"# Session maintenance as of {report.as_of.isoformat(timespec='seconds')}",
        "",
        f"**{mode}.** {_totals(report)}.",
        "",
        "| checked | sessions |",
        "|---|---:|",
    ]
    lines += [f"| {what} | {count} |" for what, count in sorted(report.checked.items())]
    verbs: dict[Action, str] = {"stop": "stopped", "delete": "deleted", "export": "exported"}
    for action, verb in verbs.items():
        items = report.of(action)
        lines += ["", f"## {'Would be ' + verb if report.dry_run else verb.capitalize()}", ""]
        if not items:
            lines.append("None.")
            continue
        lines += ["| provider | session | agent | outcome | detail |", "|---|---|---|---|---|"]
        lines += [
            f"| {item.provider} | `{item.session}` | {item.agent_key or ''} | {item.outcome} "
            f"| {item.detail.replace('|', '/')} |"
            for item in items
        ]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- {_failure(exc)}" for exc in errors]
    return "\n".join(lines) + "\n"
