"""Past conversations, as a provider keeps them: the small protocol ``record`` reads through.

A provider that can read its past conversations names a reader in its registry entry
(:attr:`~prefect_sessions.seam.provider.Provider.transcripts`). The reader pages through the
provider's own API (Voiceflow's Analytics API, Vectara's session events, LiveAvatar's
transcripts) on the engine, so it is paced like every other request, and yields each
conversation in provider-neutral terms: the user's steps and what the agent answered to each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from prefect_sessions.seam.adapter import ConnectionSettings


@dataclass(frozen=True)
class RecordedReply:
    """What the agent answered to one user step."""

    messages: tuple[str, ...] = ()
    buttons: tuple[str, ...] = ()
    #: Variables the agent set in this turn (name to the value after it).
    variables: dict[str, Any] = field(default_factory=dict)
    ended: bool = False

    @property
    def text(self) -> str:
        return "\n".join(self.messages)

    @property
    def empty(self) -> bool:
        return not self.messages and not self.buttons


@dataclass(frozen=True)
class RecordedStep:
    """One user step (``kind`` is a suite turn kind: launch, text, button, intent, event,
    no_reply) and the agent's answer to it, empty when it said nothing."""

    kind: str
    value: Any = None
    reply: RecordedReply = field(default_factory=RecordedReply)


@dataclass(frozen=True)
class RecordedConversation:
    """A past conversation: its ID at the provider, when it started, and its steps."""

    source_id: str
    steps: tuple[RecordedStep, ...]
    started_at: datetime | None = None
    environment: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unreadable:
    """A past conversation that could not be read: its ID and why (it is skipped)."""

    source_id: str
    reason: str


@dataclass(frozen=True)
class TranscriptQuery:
    """Which past conversations to read.

    Attributes:
        start, end: when they started (inclusive), in UTC.
        environment: the provider's environment (Voiceflow's alias or ID).
        tag: a tag the provider attached (Voiceflow's legacy tags and transcript properties,
            Vectara's session metadata ``tags``).
        limit: the most conversations to read.
        unredacted: ask for text as said, not as the provider redacts it.
    """

    start: datetime | None = None
    end: datetime | None = None
    environment: str | None = None
    tag: str | None = None
    limit: int = 100
    unredacted: bool = False

    def takes(self, started: datetime | None) -> bool:
        """Whether a conversation that started then is in the date range."""
        if started is None:
            return self.start is None and self.end is None
        if self.start is not None and started < self.start:
            return False
        return self.end is None or started <= self.end


class TranscriptReader(Protocol):
    """Reads one provider's past conversations. Used as an async context manager."""

    async def __aenter__(self) -> TranscriptReader: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    def conversations(
        self, query: TranscriptQuery
    ) -> AsyncIterator[RecordedConversation | Unreadable]:
        """The conversations ``query`` selects, newest first where the provider says, at most
        ``query.limit`` of them (unreadable ones are yielded too, and do not count)."""
        ...

    @property
    def notes(self) -> list[str]:
        """What the reader had to do that the user should know (a fallback taken)."""
        ...


class TranscriptReaderFactory(Protocol):
    def __call__(self, settings: ConnectionSettings) -> TranscriptReader: ...


__all__ = [
    "RecordedConversation",
    "RecordedReply",
    "RecordedStep",
    "TranscriptQuery",
    "TranscriptReader",
    "TranscriptReaderFactory",
    "Unreadable",
]
