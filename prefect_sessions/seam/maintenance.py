"""What a provider's maintenance step works with: the report it adds to, and every session of a
list handled at a bounded concurrency, one failure recorded without stopping the others.

Steps live in the provider packages (``prefect_sessions.liveavatar.maintenance`` and
``prefect_sessions.vectara.maintenance``); the run (:mod:`prefect_sessions.maintenance`) gathers
them and publishes the report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from prefect_sessions.errors import PrefectSessionsError

T = TypeVar("T")

Action = Literal["stop", "delete", "export"]
Outcome = Literal["done", "dry run", "skipped", "failed"]


class SessionAction(BaseModel):
    """What was (or, in a dry run, would be) done to one session."""

    model_config = ConfigDict(frozen=True)

    provider: str = Field(description="The provider's name.")
    action: Action
    session: str = Field(description="The session's ID or key at the provider.")
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


@dataclass(frozen=True)
class MaintenanceStep:
    """One provider's part of a maintenance run, built from its settings by the flow.

    Attributes:
        problems: what is wrong with its settings (empty when they can work); checked before
            any step runs.
        run: does the work, adding to the report: ``run(report, as_of, dry_run, max_concurrency)``.
    """

    problems: tuple[str, ...]
    run: Callable[[MaintenanceReport, datetime, bool, int], Awaitable[None]]


# -- time ----------------------------------------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def duration_text(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def failure_text(exc: BaseException) -> str:
    # The package's errors never carry secrets (see prefect_sessions.errors); keep the message
    # short for a table cell.
    return f"{type(exc).__name__}: {str(exc)[:300]}"


# -- sessions, one at a time or at a bounded concurrency ------------------------------------------


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


async def each_session(
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


def failed_action(
    provider: str,
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
        detail=failure_text(exc),
    )
