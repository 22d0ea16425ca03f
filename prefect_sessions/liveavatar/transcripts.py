"""LiveAvatar's past conversations: historic sessions and their transcripts.

Past sessions come from ``GET /v1/sessions?type=historic`` (paged); a FULL-mode session's
transcript from ``GET /v1/sessions/{id}/transcript`` (LITE sessions have none). A run of a suite
can only launch a session and keep it alive (people speak to the avatar over LiveKit), so a
recorded conversation is its launch and what the avatar said before anyone spoke; the reader
says how many spoken user turns it could not turn into steps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from prefect_sessions.liveavatar.adapter import LiveAvatarAdapter
from prefect_sessions.liveavatar.models import TranscriptEntry
from prefect_sessions.seam.adapter import ConnectionSettings
from prefect_sessions.seam.transcripts import (
    RecordedConversation,
    RecordedReply,
    RecordedStep,
    TranscriptQuery,
    Unreadable,
)


def steps_from_transcript(entries: list[TranscriptEntry]) -> tuple[tuple[RecordedStep, ...], int]:
    """The launch and the avatar's lines before the first user line; and how many user lines
    there were (a suite cannot replay speech)."""
    greeting: list[str] = []
    spoken = 0
    for entry in entries:
        if entry.role == "user":
            spoken += 1
        elif not spoken and entry.transcript.strip():
            greeting.append(entry.transcript)
    return (RecordedStep("launch", None, RecordedReply(messages=tuple(greeting))),), spoken


class LiveAvatarTranscripts(LiveAvatarAdapter):
    """Reads the account's historic LiveAvatar sessions, on the client a run would open."""

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.notes: list[str] = []

    async def conversations(
        self, query: TranscriptQuery
    ) -> AsyncIterator[RecordedConversation | Unreadable]:
        client = self.client
        read = 0
        spoken = 0
        async for session in client.iter_sessions("historic"):
            if read >= query.limit:
                break
            if not query.takes(session.created_at):
                continue
            if session.mode != "FULL":
                yield Unreadable(session.id, f"a {session.mode} session has no transcript")
                continue
            transcript = await client.get_transcript(session.id)
            steps, heard = steps_from_transcript(transcript.entries)
            spoken += heard
            read += 1
            yield RecordedConversation(
                source_id=session.id, steps=steps, started_at=session.created_at
            )
        if spoken:
            self.notes.append(
                f"{spoken} spoken user turns were left out: a LiveAvatar suite can launch a "
                "session and keep it alive, not speak in it"
            )
