"""``prefect-sessions record``: a suite from a provider's past conversations.

Each conversation read becomes one scripted conversation (:mod:`.suite_text` says what a reply
becomes). Names are stable: a conversation's ID is the hash of its steps and replies, so the same
transcript gives the same ID on every run, and identical conversations fold into one. Text is
redacted as providers redact it unless ``unredacted`` is asked for; a transcript that cannot be
read is skipped with its ID and the reason, and the rest are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from prefect_sessions.errors import ConfigurationError
from prefect_sessions.recording.redaction import redact
from prefect_sessions.recording.source import Source
from prefect_sessions.recording.suite_text import FlowList, fingerprint, suite_yaml, turn
from prefect_sessions.seam.transcripts import (
    RecordedConversation,
    RecordedReply,
    RecordedStep,
    TranscriptQuery,
    Unreadable,
)


@dataclass
class Recording:
    """What ``record`` made: the suite's text, and what it read, folded and skipped."""

    text: str = ""
    conversations: int = 0
    folded: int = 0
    skipped: list[Unreadable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _redacted(step: RecordedStep) -> RecordedStep:
    reply = step.reply
    clean = RecordedReply(
        messages=tuple(redact(m) for m in reply.messages),
        buttons=reply.buttons,
        variables={
            name: redact(value) if isinstance(value, str) else value
            for name, value in reply.variables.items()
        },
        ended=reply.ended,
    )
    value = (
        redact(step.value) if isinstance(step.value, str) and step.kind == "text" else step.value
    )
    return replace(step, value=value, reply=clean)


def conversation_entry(recorded: RecordedConversation, threshold: float) -> dict[str, Any]:
    """A recorded conversation as a suite conversation, its ID stable (``rec-`` and the hash of
    its steps)."""
    return {
        "id": "rec-" + fingerprint(recorded.steps)[:12],
        "tags": FlowList(["recorded"]),
        "turns": [turn(step, threshold) for step in recorded.steps],
    }


async def record(
    source: Source,
    query: TranscriptQuery,
    *,
    name: str,
    threshold: float,
) -> Recording:
    """Read past conversations from ``source`` and write them as a suite named ``name``."""
    factory = source.provider.transcript_reader()
    if factory is None:
        raise ConfigurationError(
            f"{source.provider.name} has no past conversations to read: record from voiceflow, "
            "vectara or liveavatar"
        )
    made = Recording()
    entries: dict[str, tuple[datetime, dict[str, Any], list[str]]] = {}
    async with factory(source.settings) as reader:
        async for item in reader.conversations(query):
            if isinstance(item, Unreadable):
                made.skipped.append(item)
                continue
            if not item.steps:
                made.skipped.append(Unreadable(item.source_id, "it has no user turn"))
                continue
            if not query.unredacted:
                item = replace(item, steps=tuple(_redacted(s) for s in item.steps))
            entry = conversation_entry(item, threshold)
            key = entry["id"]
            if key in entries:
                made.folded += 1
                entries[key][2].append(item.source_id)
                continue
            started = item.started_at or datetime.min.replace(tzinfo=timezone.utc)
            entries[key] = (started, entry, [item.source_id])
        made.notes.extend(reader.notes)
    ordered = sorted(entries.values(), key=lambda e: (e[0], e[1]["id"]))
    made.conversations = len(ordered)
    if not ordered:
        return made
    header = (
        f"Recorded by prefect-sessions record from {source.provider.name}'s past conversations "
        f"({made.conversations} conversations, {made.folded} duplicates folded).\n"
        "Free text is checked by meaning (similar), buttons and variables exactly. Review it,\n"
        "then commit it. Each conversation's ID is the hash of what happened in it."
    )
    suite = {"name": name, **source.suite_fields, "embeddings": "offline"}
    # Where each conversation came from, above it: its source IDs, in the order read.
    sources = {
        entry["id"]: "from "
        + ", ".join(ids[:5])
        + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        for _, entry, ids in ordered
    }
    made.text = suite_yaml(header, suite, [entry for _, entry, _ in ordered], sources)
    return made
