"""Vectara Agents as a conversation: a new agent session per conversation, a message per turn."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prefect_sessions.seam.adapter import (
    ClientAdapter,
    ConnectionSettings,
    ConversationFailure,
    resolve_credentials,
)
from prefect_sessions.seam.turns import Reply, Turn
from prefect_sessions.vectara.client import VectaraClient
from prefect_sessions.vectara.credentials import VectaraCredentials
from prefect_sessions.vectara.errors import SessionBusyError
from prefect_sessions.vectara.models import MessageReply, SessionContextUsage

#: Idle minutes after which Vectara deletes a session the run left behind (``tti_minutes``).
IDLE_SESSION_MINUTES = 60


@dataclass
class _Handle:
    agent_key: str
    session_key: str
    #: The context the last answer's agent call used, when Vectara reported it.
    context: SessionContextUsage | None = None


#: How long a turn waits for a session still answering an earlier input, and how often it looks.
BUSY_WAIT_SECONDS = 60.0
BUSY_POLL_SECONDS = 0.5


class VectaraAdapter(ClientAdapter[VectaraClient]):
    """Runs suite turns on a Vectara agent. The conversation's variables become the session's
    metadata. With the suite's ``cleanup: true`` the session is deleted at the end; otherwise
    Vectara deletes it after an idle hour, and the run spends no request on it."""

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.agent_key = str(settings.fields.get("agent_key") or "")

    async def open_client(self) -> VectaraClient:
        def inline(options: dict[str, Any]) -> VectaraCredentials:
            return VectaraCredentials(api_key=self.settings.api_key, **options)

        credentials = await resolve_credentials(self.settings, VectaraCredentials, inline)
        return credentials.get_client(**self.client_options())

    async def start(self, conversation_id: str, variables: Mapping[str, Any]) -> _Handle:
        # No caller-chosen key: a restarted conversation must get a fresh session, not the old one.
        session = await self.client.create_session(
            self.agent_key,
            name=conversation_id[:200],
            metadata=dict(variables) or None,
            # Left behind (no cleanup), Vectara deletes the session itself after an idle hour.
            tti_minutes=None if self.settings.cleanup else IDLE_SESSION_MINUTES,
        )
        return _Handle(self.agent_key, session.key)

    async def turn(self, handle: _Handle, turn: Turn) -> Reply:
        if turn.kind != "text":
            raise ConversationFailure(f"Vectara cannot take a {turn.kind!r} turn")
        reply = await self._send(handle, turn.value)
        return Reply(
            messages=[reply.text] if reply.text else [],
            trace_types=[event.type for event in reply.events],
            structured=reply.structured,
        )

    async def _send(self, handle: _Handle, text: str) -> MessageReply:
        """Send a turn; if the session is still answering an earlier input (409), wait until it
        stops and send again: the refused message was not taken, so it is never sent twice."""
        waited = 0.0
        while True:
            try:
                # Streamed: no read timeout on a long answer, and the stream says how much of
                # the context window the agent call used (the conversation's usage).
                reply = await self.client.send_message_streamed(
                    handle.agent_key, handle.session_key, text
                )
                if reply.context_usage is not None:
                    handle.context = reply.context_usage
                return reply
            except SessionBusyError:
                if waited >= BUSY_WAIT_SECONDS:
                    raise
            while waited < BUSY_WAIT_SECONDS:
                await asyncio.sleep(BUSY_POLL_SECONDS)
                waited += BUSY_POLL_SECONDS
                session = await self.client.get_session(handle.agent_key, handle.session_key)
                if not session.running:
                    break

    async def variables(self, handle: _Handle) -> dict[str, Any]:
        session = await self.client.get_session(handle.agent_key, handle.session_key)
        return dict(session.metadata or {})

    def usage(self, handle: _Handle) -> dict[str, float]:
        """The tokens of the conversation's last agent call (``session_context_usage``: Vectara
        reports the last call, not a running total), which grow with the conversation."""
        context = handle.context
        if context is None or context.total_tokens is None:
            return {}
        return {"context_tokens": float(context.total_tokens)}

    async def end(self, handle: _Handle) -> None:
        if self.settings.cleanup:
            await self.client.delete_session(handle.agent_key, handle.session_key, missing_ok=True)
