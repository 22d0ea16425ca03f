"""Vectara's maintenance step: delete sessions idle beyond a threshold.

A session is **idle since** its latest event's ``created_at``, else (no events) its own
``created_at``. A session with neither timestamp is never deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import aclosing
from datetime import datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from prefect_sessions.logs import run_logger
from prefect_sessions.seam.maintenance import (
    MaintenanceReport,
    MaintenanceStep,
    SessionAction,
    as_utc,
    each_session,
    failed_action,
)
from prefect_sessions.vectara import tasks as vectara_tasks
from prefect_sessions.vectara.credentials import VectaraCredentials
from prefect_sessions.vectara.models import AgentEvent, AgentSession


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


DEFAULT_VECTARA_POLICY = VectaraPolicy()


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

    actions = await each_session(
        work,
        sweep,
        lambda item, exc: failed_action("Vectara", "delete", item[1].key, exc, agent_key=item[0]),
        max_concurrency,
    )
    # Sessions in use are counted, not listed: the table is about what changes.
    report.actions.extend(action for action in actions if action.outcome != "skipped")
    report.checked["Vectara sessions in use"] = sum(a.outcome == "skipped" for a in actions)


def vectara_step(
    credentials: VectaraCredentials, policy: VectaraPolicy = DEFAULT_VECTARA_POLICY
) -> MaintenanceStep:
    """Vectara's part of a maintenance run: sweep the listed agents' idle sessions."""
    problems: list[str] = []
    if policy.delete_idle and not policy.agent_keys:
        problems.append(
            "vectara.agent_keys is empty: list the agents whose sessions to sweep, "
            "e.g. ['agt_support'], or turn vectara.delete_idle off"
        )
    if not policy.delete_idle:
        problems.append(
            "vectara_credentials is set but vectara.delete_idle is off: turn it on or clear "
            "the credentials"
        )

    async def run(
        report: MaintenanceReport, as_of: datetime, dry_run: bool, max_concurrency: int
    ) -> None:
        await _vectara(credentials, policy, as_of, dry_run, max_concurrency, report)

    return MaintenanceStep(tuple(problems), run)
