"""Vectara Agents' past conversations: an agent's sessions, and each session's events.

Sessions are listed with ``page_key`` (``GET /v2/agents/{agent_key}/sessions``); a session's
events likewise (``GET .../sessions/{session_key}/events``). ``input_message`` events are the
user's turns; the agent's answer to one is its last ``agent_output`` (or ``structured_output``)
before the next input, as a run reads it. Tags are the session metadata's ``tags``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from prefect_sessions.seam.adapter import ConnectionSettings
from prefect_sessions.seam.transcripts import (
    RecordedConversation,
    RecordedReply,
    RecordedStep,
    TranscriptQuery,
    Unreadable,
)
from prefect_sessions.vectara.adapter import VectaraAdapter
from prefect_sessions.vectara.models import (
    AgentEvent,
    AgentOutputEvent,
    AgentSession,
    InputMessageEvent,
    StructuredOutputEvent,
)

PAGE = 100


def _tags(session: AgentSession) -> tuple[str, ...]:
    tags = session.metadata.get("tags")
    if isinstance(tags, str):
        return (tags,)
    return tuple(str(tag) for tag in tags) if isinstance(tags, list) else ()


def steps_from_events(events: list[AgentEvent]) -> tuple[RecordedStep, ...]:
    """Each input message with the agent's last answer before the next input (none: silent)."""
    steps: list[RecordedStep] = []
    said: str | None = None
    asked: str | None = None

    def flush() -> None:
        if asked is not None:
            reply = RecordedReply(messages=(said,) if said else ())
            steps.append(RecordedStep("text", asked, reply))

    for event in events:
        if isinstance(event, InputMessageEvent):
            flush()
            text = " ".join(m.content for m in event.messages if m.content).strip()
            asked, said = (text or None), None
        elif isinstance(event, AgentOutputEvent):
            said = event.content
        elif isinstance(event, StructuredOutputEvent):
            said = event.text
    flush()
    return tuple(steps)


class VectaraTranscripts(VectaraAdapter):
    """Reads a Vectara agent's past sessions (the suite's ``agent_key``), on the client a run
    of the suite would open."""

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.notes: list[str] = []

    async def conversations(
        self, query: TranscriptQuery
    ) -> AsyncIterator[RecordedConversation | Unreadable]:
        client = self.client
        read = 0
        async for session in client.list_sessions(self.agent_key, page_size=PAGE):
            if read >= query.limit:
                return
            tags = _tags(session)
            if not query.takes(session.created_at) or (query.tag and query.tag not in tags):
                continue
            events = [
                event
                async for event in client.list_events(self.agent_key, session.key, page_size=PAGE)
            ]
            steps = steps_from_events(events)
            if not steps:
                yield Unreadable(session.key, "the session has no input message")
                continue
            read += 1
            yield RecordedConversation(
                source_id=session.key, steps=steps, started_at=session.created_at, tags=tags
            )
