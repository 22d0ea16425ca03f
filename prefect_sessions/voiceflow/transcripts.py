"""Voiceflow's past conversations: the Analytics API's transcripts, or the legacy transcripts API
for a project the Analytics API does not have.

- Search: ``POST {analytics}/v1/transcript/project/{projectID}`` with ``take`` (at most 100) and
  ``skip``; the body holds ``startDate``, ``endDate`` and ``environmentID``.
- One transcript: ``GET {analytics}/v1/transcript/{transcriptID}``; its ``logs[]`` are the
  user's actions (``type: action``) and the agent's traces (``type: trace``), and an entry's
  ``data`` may be a JSON string (the docs' own example is one) or an object.
- Legacy: ``GET {api}/v2/transcripts/{projectID}``, then each dialog with ``limit`` and ``offset``.

Every request goes through the engine, paced against the transcripts host's own limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from prefect_sessions.errors import NotFoundError, ProviderError
from prefect_sessions.http import HttpClient
from prefect_sessions.seam.adapter import ConnectionSettings
from prefect_sessions.seam.transcripts import (
    RecordedConversation,
    RecordedReply,
    RecordedStep,
    TranscriptQuery,
    Unreadable,
)
from prefect_sessions.voiceflow.adapter import credentials_from
from prefect_sessions.voiceflow.models import Trace, TurnResult, parse_trace

PAGE = 100
LEGACY_PAGE = 1000
#: Transcripts fetched at once: a real API answers in a tenth of a second or more, and 10,000
#: transcripts one by one would take half an hour.
FETCHES_IN_FLIGHT = 8


class UnreadableLog(ValueError):
    """A transcript's logs cannot be turned into steps."""


def _data(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise UnreadableLog(f"a log entry is not an object: {str(entry)[:60]!r}")
    data = entry.get("data")
    if isinstance(data, str):  # the Analytics API sends it as JSON text
        try:
            data = json.loads(data)
        except ValueError:
            raise UnreadableLog(f"a log entry's data is not JSON: {data[:60]!r}") from None
    if not isinstance(data, dict):
        raise UnreadableLog(f"a log entry's data is not an object: {str(data)[:60]!r}")
    return data


def _step(action: dict[str, Any]) -> tuple[str, Any] | None:
    """The suite turn an action replays as; ``None`` for one that is not the user's (``end``)."""
    kind = action.get("type")
    payload = action.get("payload")
    if kind == "launch":
        return ("launch", None)
    if kind == "text" and isinstance(payload, str) and payload.strip():
        return ("text", payload)
    if kind == "no-reply":
        return ("no_reply", None)
    if kind == "end":
        return None
    if isinstance(payload, dict):
        if kind == "intent":
            query = payload.get("query")
            if isinstance(query, str) and query.strip():
                return ("text", query)
            name = (payload.get("intent") or {}).get("name")
            if isinstance(name, str) and name:
                return ("intent", name)
        if kind == "event":
            name = (payload.get("event") or {}).get("name")
            if isinstance(name, str) and name:
                return ("event", name)
        label = payload.get("label")
        if isinstance(label, str) and label.strip():
            return ("button", label)  # a button press sends the button's request back
    raise UnreadableLog(f"an action of type {kind!r} cannot be replayed as a turn")


def _reply(traces: list[dict[str, Any]]) -> RecordedReply:
    parsed: list[Trace] = []
    changed: dict[str, Any] = {}
    for trace in traces:
        if trace.get("type") == "log":
            payload = trace.get("payload") or {}
            message = payload.get("message") if isinstance(payload, dict) else None
            if isinstance(payload, dict) and payload.get("kind") == "step.set":
                for name, change in (message or {}).get("changedVariables", {}).items():
                    changed[name] = change.get("after") if isinstance(change, dict) else change
            continue
        try:
            parsed.append(parse_trace(trace))
        except ValueError as exc:
            raise UnreadableLog(str(exc)) from None
    result = TurnResult(traces=parsed)
    return RecordedReply(
        messages=tuple(result.messages),
        buttons=tuple(button.name for button in result.buttons if button.url is None),
        variables=changed,
        ended=result.ended,
    )


def steps_from_logs(entries: Iterable[tuple[str, dict[str, Any]]]) -> tuple[RecordedStep, ...]:
    """A transcript's steps from its log entries, ``(kind, data)`` in order: each action with
    the traces that follow it until the next action. A turn without a reply keeps an empty one.

    Raises:
        UnreadableLog: an entry cannot be read, or an action cannot be replayed.
    """
    steps: list[RecordedStep] = []
    pending: tuple[str, Any] | None = None
    traces: list[dict[str, Any]] = []

    def flush() -> None:
        if pending is not None:
            steps.append(RecordedStep(pending[0], pending[1], _reply(traces)))

    for kind, data in entries:
        if kind == "action":
            flush()
            pending, traces = _step(data), []
        elif kind == "trace":
            if pending is None and not steps:
                pending = ("launch", None)  # the agent spoke first: the session's launch
            traces.append(data)
    flush()
    return tuple(steps)


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _tagged(properties: Any, tag: str | None) -> bool:
    if tag is None:
        return True
    for item in properties if isinstance(properties, list) else []:
        if isinstance(item, dict) and tag in (item.get("name"), item.get("value")):
            return True
        if item == tag:
            return True
    return False


class VoiceflowTranscripts:
    """Reads a Voiceflow project's past conversations (see the module's docs)."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.notes: list[str] = []
        self._analytics: HttpClient | None = None
        self._legacy: HttpClient | None = None
        self.project_id = ""

    async def __aenter__(self) -> VoiceflowTranscripts:
        credentials = await credentials_from(self.settings)
        self.project_id = credentials.project_id
        options: dict[str, Any] = {}
        if self.settings.pacers is not None:
            options["pacers"] = self.settings.pacers
        analytics, legacy = credentials.transcript_urls()
        self._analytics = await credentials.transcripts_http(analytics, **options).__aenter__()
        self._legacy = (
            self._analytics  # one host serves both (the emulator, a private cloud)
            if legacy == analytics
            else await credentials.transcripts_http(legacy, **options).__aenter__()
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for http in (self._analytics, self._legacy):
            if http is not None:
                await http.aclose()  # closing the one shared client twice does nothing

    @property
    def http(self) -> tuple[HttpClient, HttpClient]:
        if self._analytics is None or self._legacy is None:
            raise RuntimeError("use the transcript reader inside 'async with'")
        return self._analytics, self._legacy

    async def conversations(
        self, query: TranscriptQuery
    ) -> AsyncIterator[RecordedConversation | Unreadable]:
        """The project's transcripts, newest first, at most ``query.limit`` read."""
        try:
            first = await self._search(query, 0)
        except NotFoundError:
            self.notes.append(
                f"the Analytics API has no transcripts of project {self.project_id}: read "
                "them from the legacy transcripts API instead"
            )
            async for item in self._legacy_conversations(query):
                yield item
            return
        read = 0
        skip = 0
        page = first
        while True:
            wanted = [s for s in page if _tagged(s.get("properties"), query.tag)]
            while wanted and read < query.limit:
                # A few fetches in flight (the engine paces them), yielded in the search's order.
                batch = wanted[: min(FETCHES_IN_FLIGHT, query.limit - read)]
                wanted = wanted[len(batch) :]
                items = await asyncio.gather(
                    *(self._one(str(s.get("id")), query, s) for s in batch)
                )
                for item in items:
                    read += isinstance(item, RecordedConversation)
                    yield item
            if len(page) < PAGE or read >= query.limit:
                return
            skip += PAGE
            page = await self._search(query, skip)

    async def _search(self, query: TranscriptQuery, skip: int) -> list[dict[str, Any]]:
        analytics, _ = self.http
        body = {
            "startDate": _stamp(query.start),
            "endDate": _stamp(query.end),
            "environmentID": query.environment,
        }
        answer = await analytics.request_json(
            "POST",
            f"/v1/transcript/project/{quote(self.project_id, safe='')}",
            operation="search transcripts",
            idempotent=True,  # a search changes nothing
            expect=dict,
            params={"take": PAGE, "skip": skip, "order": "DESC"},
            json={key: value for key, value in body.items() if value is not None},
        )
        found = answer.get("transcripts")
        if not isinstance(found, list):
            raise analytics_error("search transcripts", "the answer has no 'transcripts' list")
        return [item for item in found if isinstance(item, dict)]

    async def _one(
        self, transcript_id: str, query: TranscriptQuery, summary: dict[str, Any]
    ) -> RecordedConversation | Unreadable:
        analytics, _ = self.http
        params = {"unredacted": "true"} if query.unredacted else {}
        answer = await analytics.request_json(
            "GET",
            f"/v1/transcript/{quote(transcript_id, safe='')}",
            operation="get transcript",
            idempotent=True,
            expect=dict,
            params=params,
        )
        transcript = answer.get("transcript")
        logs = transcript.get("logs") if isinstance(transcript, dict) else None
        if not isinstance(logs, list):
            return Unreadable(transcript_id, "the transcript has no 'logs' list")
        try:
            steps = steps_from_logs((str(e.get("type")), _data(e)) for e in logs)
        except (UnreadableLog, AttributeError) as exc:
            return Unreadable(transcript_id, str(exc))
        return RecordedConversation(
            source_id=transcript_id,
            steps=steps,
            started_at=_when(summary.get("createdAt")),
            environment=summary.get("environmentID"),
        )

    async def _legacy_conversations(
        self, query: TranscriptQuery
    ) -> AsyncIterator[RecordedConversation | Unreadable]:
        _, legacy = self.http
        params = {
            "tag": query.tag,
            "startDate": _stamp(query.start),
            "endDate": _stamp(query.end),
        }
        listed = await legacy.request_json(
            "GET",
            f"/v2/transcripts/{quote(self.project_id, safe='')}",
            operation="list legacy transcripts",
            idempotent=True,
            expect=list,
            params={key: value for key, value in params.items() if value is not None},
        )
        read = 0
        for summary in listed:
            if read >= query.limit:
                return
            if not isinstance(summary, dict) or not summary.get("_id"):
                continue
            item = await self._legacy_one(str(summary["_id"]), summary)
            read += isinstance(item, RecordedConversation)
            yield item

    async def _legacy_one(
        self, transcript_id: str, summary: dict[str, Any]
    ) -> RecordedConversation | Unreadable:
        _, legacy = self.http
        path = f"/v2/transcripts/{quote(self.project_id, safe='')}/{quote(transcript_id, safe='')}"
        turns: list[Any] = []
        while True:
            page = await legacy.request_json(
                "GET",
                path,
                operation="get legacy transcript",
                idempotent=True,
                expect=list,
                params={"limit": LEGACY_PAGE, "offset": len(turns)},
            )
            turns.extend(page)
            if len(page) < LEGACY_PAGE:
                break
        try:
            steps = steps_from_logs(_legacy_entry(turn) for turn in turns)
        except UnreadableLog as exc:
            return Unreadable(transcript_id, str(exc))
        return RecordedConversation(
            source_id=transcript_id,
            steps=steps,
            started_at=_when(summary.get("createdAt")),
            tags=tuple(str(tag) for tag in summary.get("reportTags") or ()),
        )


def _legacy_entry(turn: Any) -> tuple[str, dict[str, Any]]:
    """A legacy dialog turn (``{format: launch|request|trace, type, payload}``) as a log entry."""
    if not isinstance(turn, dict):
        raise UnreadableLog(f"a dialog turn is not an object: {str(turn)[:60]!r}")
    payload = turn.get("payload")
    data = payload if isinstance(payload, dict) and "type" in payload else None
    if data is None:
        data = {"type": turn.get("type"), "payload": payload}
    kind = "trace" if turn.get("format") == "trace" else "action"
    return kind, data


def analytics_error(operation: str, detail: str) -> ProviderError:
    return ProviderError(provider="Voiceflow", operation=operation, detail=detail)
