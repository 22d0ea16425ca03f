"""The Vectara Agents client: sessions and events, one method per endpoint, over the HTTP engine."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import EventSource, SSEError
from pydantic import ValidationError

from prefect_sessions.errors import (
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    ProviderError,
)
from prefect_sessions.http import HttpClient
from prefect_sessions.http.paging import follow_cursor
from prefect_sessions.vectara.errors import AgentStreamError, SessionBusyError
from prefect_sessions.vectara.models import (
    STORED_EVENT_TYPES,
    AgentEvent,
    AgentInput,
    AgentOutputEvent,
    AgentSession,
    ClientToolPendingCall,
    Compact,
    ContextConsumedEvent,
    CreateSessionRequest,
    EventPage,
    InputBehavior,
    InputMessage,
    InputMessageEvent,
    Interrupt,
    MessageReply,
    SessionContextUsage,
    SessionPage,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamingAgentOutput,
    StreamingAgentOutputEnd,
    StreamingThinking,
    StreamingThinkingEnd,
    StructuredOutputEvent,
    ThinkingEvent,
    ToolOutput,
    ToolOutputs,
    UpdateSessionRequest,
    check_event_id,
    check_key,
    parse_event,
    parse_stream_event,
)


def _key(value: str, field: str) -> str:
    try:
        return quote(check_key(value, field), safe="")
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _page_size(value: int | None) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ConfigurationError(
            f"page_size {value!r} is out of range: Vectara returns 1 to 100 items per page"
        )
    return {"limit": value}


def _message(
    message: InputMessage | str,
    *,
    stream: bool,
    since: str | None = None,
    behavior: InputBehavior | None = None,
) -> InputMessage:
    try:
        built = InputMessage.text(message) if isinstance(message, str) else message
        changes: dict[str, Any] = {"stream_response": stream}
        if since is not None or behavior is not None:
            changes |= {"since": since, "behavior": behavior}
        return InputMessage.model_validate({**built.model_dump(), **changes})
    except ValueError as exc:  # pydantic's ValidationError included
        raise ConfigurationError(f"send message: {exc}") from None


def _busy(exc: InvalidRequestError) -> InvalidRequestError:
    """A 409 on an input is Vectara's "already running": the typed error says what to do."""
    if exc.status_code != 409:
        return exc
    return exc.recast(
        SessionBusyError,
        "the session is still answering an earlier input; the message was not taken: send it "
        "again once the session stops, or queue it with since=",
    )


class VectaraClient:
    """Vectara Agents sessions and events, used as ``async with credentials.get_client() as c``.

    Every method validates its input before sending and raises the package's typed errors
    (:mod:`prefect_sessions.errors`): a missing agent or session is ``NotFoundError``, a rejected
    body ``InvalidRequestError`` with ``field_errors``, each quoting Vectara's ``request_id``.

    Example:
        ```python
        async with credentials.get_client() as client:
            session = await client.create_session("support", name="Billing question")
            reply = await client.send_message("support", session.key, "Why was I charged twice?")
            print(reply.text)
        ```
    """

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url='{self.http.base_url}')"

    async def __aenter__(self) -> VectaraClient:
        await self.http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.__aexit__(*exc_info)

    @staticmethod
    def _sessions_path(agent_key: str) -> str:
        return f"/v2/agents/{_key(agent_key, 'agent_key')}/sessions"

    def _session_path(self, agent_key: str, session_key: str) -> str:
        return f"{self._sessions_path(agent_key)}/{_key(session_key, 'session_key')}"

    # -- sessions -------------------------------------------------------------------------------

    async def create_session(
        self,
        agent_key: str,
        *,
        name: str,
        key: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        tti_minutes: int | None = None,
        from_session: str | None = None,
    ) -> AgentSession:
        """Create a session of ``agent_key`` (``POST /v2/agents/{agent_key}/sessions``, 201);
        with ``from_session``, a fork that starts with that session's history.

        With your own ``key`` the call is safe to retry: a session key is unique, so a repeat
        cannot create a second session. If a repeat is refused because an earlier attempt (whose
        answer was lost) already created it, the session is read back and returned when its name,
        description and metadata are the ones requested. Without ``key`` it is never retried.
        """
        path = self._sessions_path(agent_key)
        try:
            body = CreateSessionRequest(
                name=name,
                key=key,
                description=description,
                metadata=dict(metadata) if metadata is not None else None,
                enabled=enabled,
                tti_minutes=tti_minutes,
                from_session=from_session,
            )
        except ValidationError as exc:
            raise ConfigurationError(f"create session: {_first_error(exc)}") from None
        operation = "create session"
        try:
            response = await self.http.request(
                "POST", path, operation=operation, idempotent=key is not None, json=body.to_wire()
            )
        except InvalidRequestError as exc:
            if key is None or exc.attempts < 2:
                raise
            existing = await self._created_earlier(agent_key, body)
            if existing is None:
                raise
            return existing
        return self._model(AgentSession, response, operation)

    async def _created_earlier(
        self, agent_key: str, body: CreateSessionRequest
    ) -> AgentSession | None:
        assert body.key is not None
        try:
            session = await self.get_session(agent_key, body.key)
        except NotFoundError:
            return None
        same = (
            session.name == body.name
            and session.description == body.description
            and session.metadata == (body.metadata or {})
        )
        return session if same else None

    async def get_sessions_page(
        self,
        agent_key: str,
        *,
        filter: str | None = None,
        page_size: int | None = None,
        page_key: str | None = None,
        metadata_filter: str | None = None,
    ) -> SessionPage:
        """One page of sessions; pass the returned ``page_key`` to get the next one."""
        params: dict[str, Any] = _page_size(page_size)
        if filter is not None:
            params["filter"] = filter
        if metadata_filter is not None:
            params["metadata_filter"] = metadata_filter
        if page_key is not None:
            params["page_key"] = page_key
        operation = "list sessions"
        response = await self.http.request(
            "GET",
            self._sessions_path(agent_key),
            operation=operation,
            idempotent=True,
            params=params,
        )
        payload = self.http.read_json(response, operation, expect=dict)
        sessions = self._validate(AgentSession, payload.get("sessions"), operation)
        return SessionPage(sessions=sessions, page_key=_next_page_key(payload))

    async def list_sessions(
        self,
        agent_key: str,
        *,
        filter: str | None = None,
        page_size: int | None = None,
        metadata_filter: str | None = None,
    ) -> AsyncGenerator[AgentSession, None]:
        """Every session of ``agent_key``, page after page, as they arrive.

        Args:
            filter: a regular expression matched against session names and descriptions.
            page_size: sessions per request (Vectara's ``limit``, 1 to 100; its default is 10).
            metadata_filter: a filter on session metadata, e.g. ``"customer_id = '12345'"``.
        """

        async def fetch(page_key: str | None) -> tuple[list[AgentSession], str | None]:
            page = await self.get_sessions_page(
                agent_key,
                filter=filter,
                page_size=page_size,
                page_key=page_key,
                metadata_filter=metadata_filter,
            )
            return page.sessions, page.page_key

        async for session in follow_cursor(
            fetch, provider=self.http.provider, operation="list sessions", cursor_name="page_key"
        ):
            yield session

    async def get_session(self, agent_key: str, session_key: str) -> AgentSession:
        """One session (``GET .../sessions/{session_key}``)."""
        operation = "get session"
        response = await self.http.request(
            "GET",
            self._session_path(agent_key, session_key),
            operation=operation,
            idempotent=True,
        )
        return self._model(AgentSession, response, operation)

    async def update_session(
        self,
        agent_key: str,
        session_key: str,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        tti_minutes: int | None = None,
    ) -> AgentSession:
        """Change a session (``PATCH``); only the fields given are sent. Returns the new session."""
        path = self._session_path(agent_key, session_key)
        try:
            body = UpdateSessionRequest(
                name=name,
                description=description,
                metadata=dict(metadata) if metadata is not None else None,
                enabled=enabled,
                tti_minutes=tti_minutes,
            )
        except ValidationError as exc:
            raise ConfigurationError(f"update session: {_first_error(exc)}") from None
        operation = "update session"
        # The same PATCH body twice leaves the same session: safe to retry.
        response = await self.http.request(
            "PATCH", path, operation=operation, idempotent=True, json=body.to_wire()
        )
        return self._model(AgentSession, response, operation)

    async def delete_session(
        self, agent_key: str, session_key: str, *, missing_ok: bool = False
    ) -> bool:
        """Delete a session and its events (204). Returns ``False`` if it was already gone and
        ``missing_ok`` is set (useful for clean-up, and after a retried delete whose first answer
        was lost); otherwise a missing session raises ``NotFoundError``."""
        path = self._session_path(agent_key, session_key)
        try:
            await self.http.request("DELETE", path, operation="delete session", idempotent=True)
        except NotFoundError:
            if missing_ok:
                return False
            raise
        return True

    # -- events ---------------------------------------------------------------------------------

    async def send_message(
        self,
        agent_key: str,
        session_key: str,
        message: InputMessage | str,
        *,
        since: str | None = None,
        behavior: InputBehavior | None = None,
    ) -> MessageReply:
        """Send the user's message and wait for the agent's whole answer (201).

        Never retried once it may have reached Vectara: the agent would answer twice. A lost
        answer raises ``OutcomeUnknownError``; read the session's events to see what happened.

        Args:
            since: on a session that is still answering, queue the message instead of being
                refused: the answer then holds every event after this event ID (``"start"``:
                from the session's start).
            behavior: how a queued message is taken: ``steer`` the running answer, or
                ``follow_up`` after it.

        Raises:
            SessionBusyError: the session is still answering and ``since`` was not given; the
                message was not taken.
        """
        body = _message(message, stream=False, since=since, behavior=behavior)
        return await self.send_input(agent_key, session_key, body, operation="send message")

    async def send_input(
        self,
        agent_key: str,
        session_key: str,
        body: AgentInput,
        *,
        operation: str = "send input",
    ) -> MessageReply:
        """Send any input (a message, an :class:`Interrupt`, a :class:`Compact`, client
        :class:`ToolOutputs`) and wait for the events it produced."""
        path = f"{self._session_path(agent_key, session_key)}/events"
        try:
            response = await self.http.request(
                "POST", path, operation=operation, idempotent=False, json=body.to_wire()
            )
        except InvalidRequestError as exc:
            raise _busy(exc) from None
        payload = self.http.read_json(response, operation, expect=dict)
        events = self._events(payload.get("events"), response, operation)
        reply_key = payload.get("session_key")
        return MessageReply.from_events(
            reply_key if isinstance(reply_key, str) else session_key, events
        )

    async def interrupt(self, agent_key: str, session_key: str) -> MessageReply:
        """Cancel what the agent is doing; the reply holds its ``session_interrupted`` event."""
        return await self.send_input(agent_key, session_key, Interrupt(), operation="interrupt")

    async def compact(
        self,
        agent_key: str,
        session_key: str,
        *,
        up_to_event_id: str | None = None,
        message: str | None = None,
    ) -> MessageReply:
        """Compact the session's history (queued while it runs); the reply holds the
        ``compaction`` event."""
        body = Compact(compact_up_to_event_id=up_to_event_id, compaction_message=message)
        return await self.send_input(agent_key, session_key, body, operation="compact")

    async def send_tool_outputs(
        self, agent_key: str, session_key: str, outputs: Sequence[ToolOutput]
    ) -> MessageReply:
        """Deliver the results of client tool calls the agent waits for (the calls of its
        ``client_tool_pending`` event); the agent then goes on."""
        try:
            body = ToolOutputs(tool_outputs=list(outputs))
        except ValidationError as exc:
            raise ConfigurationError(f"send tool outputs: {_first_error(exc)}") from None
        return await self.send_input(agent_key, session_key, body, operation="send tool outputs")

    async def stream_message(
        self,
        agent_key: str,
        session_key: str,
        message: InputMessage | str,
        *,
        since: str | None = None,
        behavior: InputBehavior | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Send the user's message and yield the agent's answer as it streams (SSE).

        Yields ``streaming_thinking``/``streaming_agent_output`` chunks, tool events and any
        event type this package does not know (as :class:`UnknownEvent`); the final ``end`` ends
        the iteration. An ``error`` event raises :class:`AgentStreamError`; a stream cut before
        ``end`` raises ``OutcomeUnknownError``. Close it early with ``contextlib.aclosing``.
        ``since`` and ``behavior`` queue the message as in :meth:`send_message`.
        """
        path = f"{self._session_path(agent_key, session_key)}/events"
        body = _message(message, stream=True, since=since, behavior=behavior)
        operation = "send message"
        provider = self.http.provider
        received = 0
        try:
            async with self.http.stream(
                "POST",
                path,
                operation=operation,
                idempotent=False,
                json=body.to_wire(),
                headers={"accept": "text/event-stream"},
            ) as response:
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    # Answered in one piece despite stream_response: hand its events out all
                    # the same.
                    await response.aread()
                    payload = self.http.read_json(response, operation, expect=dict)
                    for stored in self._events(payload.get("events"), response, operation):
                        for event in _as_streamed(stored):
                            yield event
                    return
                try:
                    async for sse in EventSource(response).aiter_sse():
                        if not sse.data.strip():
                            continue  # keep-alive
                        try:
                            data: Any = json.loads(sse.data, strict=False)
                        except ValueError:
                            data = {"type": "", "data": sse.data}
                        event = parse_stream_event(data)
                        received += 1
                        if isinstance(event, StreamEnd):
                            return
                        if isinstance(event, StreamError):
                            raise AgentStreamError(
                                provider=provider,
                                operation=operation,
                                status_code=response.status_code,
                                server_message="; ".join(event.messages) or None,
                                detail=(
                                    f"the agent reported an error after {received - 1} events; "
                                    "the message was stored, so it was not sent again"
                                ),
                            )
                        yield event
                except SSEError as exc:
                    raise _incomplete(
                        provider, operation, response, f"unreadable stream ({exc})"
                    ) from exc
        except InvalidRequestError as exc:  # refused before any event: nothing was taken
            raise _busy(exc) from None
        raise _incomplete(provider, operation, response, f"stream ended after {received} events")

    async def send_message_streamed(
        self,
        agent_key: str,
        session_key: str,
        message: InputMessage | str,
        *,
        since: str | None = None,
        behavior: InputBehavior | None = None,
    ) -> MessageReply:
        """:meth:`send_message` over the stream: no read timeout on a long answer, same reply.

        Thinking and output chunks are folded into ``text`` (the last complete answer); tool,
        context and image events, and unknown ones, are kept in ``events``.
        """
        events: list[AgentEvent] = []
        answer: list[str] = []
        last = ""
        echoed: str | None = None
        usage: SessionContextUsage | None = None
        stream_events = self.stream_message(
            agent_key, session_key, message, since=since, behavior=behavior
        )
        async with aclosing(stream_events) as stream:
            async for event in stream:
                if isinstance(event, StreamingAgentOutput):
                    answer.append(event.content)
                elif isinstance(event, StreamingAgentOutputEnd):
                    last, answer = "".join(answer), []
                elif isinstance(event, InputMessageEvent):
                    echoed = event.id  # the stream's echo of what was sent
                elif isinstance(event, ContextConsumedEvent):
                    usage = event.session_context_usage
                elif isinstance(event, STORED_EVENT_TYPES):
                    if isinstance(event, StructuredOutputEvent):
                        last = event.text  # sent whole, never in chunks
                    events.append(event)  # type: ignore[arg-type]
        if answer:  # chunks without their closing event still make up the answer
            last = "".join(answer)
        return MessageReply(
            session_key=session_key,
            text=last,
            events=events,
            input_event_id=echoed,
            context_usage=usage,
        )

    async def get_events_page(
        self,
        agent_key: str,
        session_key: str,
        *,
        page_size: int | None = None,
        page_key: str | None = None,
        include_hidden: bool = False,
    ) -> EventPage:
        """One page of a session's events, oldest first; pass ``page_key`` for the next.
        ``include_hidden`` also returns the events compaction hid."""
        params: dict[str, Any] = _page_size(page_size)
        if page_key is not None:
            params["page_key"] = page_key
        if include_hidden:
            params["include_hidden"] = "true"
        operation = "list events"
        response = await self.http.request(
            "GET",
            f"{self._session_path(agent_key, session_key)}/events",
            operation=operation,
            idempotent=True,
            params=params,
        )
        payload = self.http.read_json(response, operation, expect=dict)
        events = self._events(payload.get("events"), response, operation)
        return EventPage(events=events, page_key=_next_page_key(payload))

    async def list_events(
        self,
        agent_key: str,
        session_key: str,
        *,
        page_size: int | None = None,
        include_hidden: bool = False,
    ) -> AsyncGenerator[AgentEvent, None]:
        """Every event of a session, page after page (``page_size``: 1 to 100 per request;
        ``include_hidden``: with the events compaction hid)."""

        async def fetch(page_key: str | None) -> tuple[list[AgentEvent], str | None]:
            page = await self.get_events_page(
                agent_key,
                session_key,
                page_size=page_size,
                page_key=page_key,
                include_hidden=include_hidden,
            )
            return page.events, page.page_key

        async for event in follow_cursor(
            fetch, provider=self.http.provider, operation="list events", cursor_name="page_key"
        ):
            yield event

    async def get_event(self, agent_key: str, session_key: str, event_id: str) -> AgentEvent:
        """One event by its ID (``aev_...``)."""
        return await self._event_call("GET", "get", agent_key, session_key, event_id)

    async def hide_event(self, agent_key: str, session_key: str, event_id: str) -> AgentEvent:
        """Hide an event: it leaves the agent's context and the default events list (listed
        again with ``include_hidden=True``)."""
        return await self._event_call("POST", "hide", agent_key, session_key, event_id)

    async def unhide_event(self, agent_key: str, session_key: str, event_id: str) -> AgentEvent:
        """Bring a hidden event back into the agent's context."""
        return await self._event_call("POST", "unhide", agent_key, session_key, event_id)

    async def delete_event(self, agent_key: str, session_key: str, event_id: str) -> None:
        """Delete an event for good (from the vendor's metadata database and event store)."""
        await self._event_request("DELETE", "delete", agent_key, session_key, event_id)

    async def _event_call(
        self, method: str, action: str, agent_key: str, session_key: str, event_id: str
    ) -> AgentEvent:
        response = await self._event_request(method, action, agent_key, session_key, event_id)
        return parse_event(self.http.read_json(response, f"{action} event", expect=dict))

    async def _event_request(
        self, method: str, action: str, agent_key: str, session_key: str, event_id: str
    ) -> httpx.Response:
        try:
            checked = quote(check_event_id(event_id), safe="")
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        path = f"{self._session_path(agent_key, session_key)}/events/{checked}"
        if action in ("hide", "unhide"):
            path = f"{path}/{action}"
        # Reading, hiding, unhiding and deleting land on the same state however often sent.
        return await self.http.request(method, path, operation=f"{action} event", idempotent=True)

    async def outstanding_client_tool_calls(
        self, agent_key: str, session_key: str
    ) -> list[ClientToolPendingCall]:
        """The client tool calls the session is parked on, one per ``tool_input`` still awaiting
        a ``tool_output``: the durable way to recover them after a lost stream. Answer each with
        :meth:`send_tool_outputs`. Their arguments may hold secrets the tool needs."""
        operation = "list outstanding client tool calls"
        response = await self.http.request(
            "GET",
            f"{self._session_path(agent_key, session_key)}/outstanding_client_tool_calls",
            operation=operation,
            idempotent=True,
        )
        payload = self.http.read_json(response, operation, expect=dict)
        calls = payload.get("client_tool_calls")
        if not isinstance(calls, list):
            raise self.http.unreadable(response, operation, "'client_tool_calls' is not a list")
        try:
            return [ClientToolPendingCall.model_validate(call) for call in calls]
        except ValueError as exc:
            raise self.http.unreadable(response, operation, _first_error(exc)) from None

    # -- reading answers ------------------------------------------------------------------------

    def _events(self, raw: Any, response: httpx.Response, operation: str) -> list[AgentEvent]:
        if not isinstance(raw, list):
            raise self.http.unreadable(response, operation, "'events' is not a list")
        return [parse_event(item) for item in raw]

    def _model(
        self, model: type[AgentSession], response: httpx.Response, operation: str
    ) -> AgentSession:
        return self._validate(
            model, [self.http.read_json(response, operation, expect=dict)], operation
        )[0]

    def _validate(
        self, model: type[AgentSession], payload: Any, operation: str
    ) -> list[AgentSession]:
        try:
            if not isinstance(payload, list):
                raise ValueError("expected a list of sessions")
            return [model.model_validate(item) for item in payload]
        except ValueError as exc:
            raise ProviderError(
                provider=self.http.provider,
                operation=operation,
                detail=f"the answer does not look like a Vectara session: {_first_error(exc)}",
            ) from None


def _as_streamed(event: AgentEvent) -> list[StreamEvent]:
    """A stored event as the stream would have sent it (for a server that did not stream)."""
    if isinstance(event, AgentOutputEvent):
        return [
            StreamingAgentOutput(content=event.content, created_at=event.created_at),
            StreamingAgentOutputEnd(created_at=event.created_at),
        ]
    if isinstance(event, ThinkingEvent):
        return [
            StreamingThinking(content=event.content or "", created_at=event.created_at),
            StreamingThinkingEnd(created_at=event.created_at),
        ]
    if isinstance(event, InputMessageEvent):
        return []  # the echo of what was sent; the stream does not repeat it
    return [parse_stream_event(event.model_dump(mode="json"))]


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"{where}: {message}"
    return str(exc)


def _next_page_key(payload: Mapping[str, Any]) -> str | None:
    metadata = payload.get("metadata")
    page_key = metadata.get("page_key") if isinstance(metadata, dict) else None
    return page_key if isinstance(page_key, str) and page_key else None


def _incomplete(
    provider: str, operation: str, response: httpx.Response, detail: str
) -> OutcomeUnknownError:
    return OutcomeUnknownError(
        provider=provider,
        operation=operation,
        status_code=response.status_code,
        detail=f"{detail} without its 'end' event; the agent got the message but may not have "
        "finished its answer",
    )
