"""Prefect tasks for Vectara Agents, each an async/sync pair (``acreate_session``, ...).

Every task takes the credentials block, opens its own client and logs counts and types only. None
is cached: reads must show the session as it is now, and writes must happen each time asked.
"""

from __future__ import annotations

from collections import Counter
from contextlib import aclosing
from typing import Any

from prefect.cache_policies import NO_CACHE

from prefect_sessions.errors import ConfigurationError
from prefect_sessions.logs import run_logger
from prefect_sessions.task_pairs import task_pair
from prefect_sessions.vectara.credentials import VectaraCredentials
from prefect_sessions.vectara.models import (
    AgentEvent,
    AgentInput,
    AgentSession,
    InputBehavior,
    MessageReply,
)


def _limit(value: int | None, field: str) -> int | None:
    if value is not None and value < 0:
        raise ConfigurationError(f"{field} must be 0 or more, or empty for no limit")
    return value


async def _create_session(
    credentials: VectaraCredentials,
    agent_key: str,
    name: str,
    key: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    enabled: bool | None = None,
    tti_minutes: int | None = None,
) -> AgentSession:
    """Create a session of a Vectara agent, optionally with your own key and metadata."""
    async with credentials.get_client() as client:
        session = await client.create_session(
            agent_key,
            name=name,
            key=key,
            description=description,
            metadata=metadata,
            enabled=enabled,
            tti_minutes=tti_minutes,
        )
    run_logger().info(
        "Created Vectara session %s of agent %s (%d metadata fields)",
        session.key,
        agent_key,
        len(session.metadata),
    )
    return session


async def _list_sessions(
    credentials: VectaraCredentials,
    agent_key: str,
    filter: str | None = None,
    page_size: int = 100,
    max_sessions: int | None = None,
) -> list[AgentSession]:
    """List an agent's sessions across every page (or the first ``max_sessions``)."""
    _limit(max_sessions, "max_sessions")
    sessions: list[AgentSession] = []
    async with credentials.get_client() as client:
        if max_sessions != 0:
            size = page_size if max_sessions is None else min(page_size, max_sessions)
            pages = client.list_sessions(agent_key, filter=filter, page_size=size)
            async with aclosing(pages):
                async for session in pages:
                    sessions.append(session)
                    if len(sessions) == max_sessions:
                        break
    run_logger().info("Listed %d Vectara sessions of agent %s", len(sessions), agent_key)
    return sessions


async def _get_session(
    credentials: VectaraCredentials, agent_key: str, session_key: str
) -> AgentSession:
    """Read one session of a Vectara agent."""
    async with credentials.get_client() as client:
        session = await client.get_session(agent_key, session_key)
    run_logger().info("Read Vectara session %s (enabled=%s)", session.key, session.enabled)
    return session


async def _update_session(
    credentials: VectaraCredentials,
    agent_key: str,
    session_key: str,
    name: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    enabled: bool | None = None,
    tti_minutes: int | None = None,
) -> AgentSession:
    """Change a session's name, description, metadata, enabled flag or idle timeout."""
    changed = [
        field
        for field, value in (
            ("name", name),
            ("description", description),
            ("metadata", metadata),
            ("enabled", enabled),
            ("tti_minutes", tti_minutes),
        )
        if value is not None
    ]
    async with credentials.get_client() as client:
        session = await client.update_session(
            agent_key,
            session_key,
            name=name,
            description=description,
            metadata=metadata,
            enabled=enabled,
            tti_minutes=tti_minutes,
        )
    run_logger().info("Updated Vectara session %s: %s", session.key, ", ".join(changed))
    return session


async def _delete_session(
    credentials: VectaraCredentials, agent_key: str, session_key: str, missing_ok: bool = False
) -> bool:
    """Delete a session and its events; with ``missing_ok``, a session already gone is fine."""
    async with credentials.get_client() as client:
        deleted = await client.delete_session(agent_key, session_key, missing_ok=missing_ok)
    run_logger().info(
        "Deleted Vectara session %s" if deleted else "Vectara session %s was already gone",
        session_key,
    )
    return deleted


async def _send_message(
    credentials: VectaraCredentials,
    agent_key: str,
    session_key: str,
    message: str,
    stream: bool = False,
    since: str | None = None,
    behavior: InputBehavior | None = None,
) -> MessageReply:
    """Send the user's message to the agent; return its output events and final text.

    With ``stream`` the answer is read as it streams, so a long answer is not cut by the read
    timeout; the reply is the same, with output chunks folded into the text. A session still
    answering refuses the message (``SessionBusyError``) unless ``since`` queues it (an event
    ID, or ``"start"``); ``behavior`` (``steer`` or ``follow_up``) says how it is taken.
    """
    async with credentials.get_client() as client:
        send = client.send_message_streamed if stream else client.send_message
        reply = await send(agent_key, session_key, message, since=since, behavior=behavior)
    kinds = Counter(event.type for event in reply.events)
    run_logger().info(
        "Vectara agent %s answered in session %s: %d events (%s), %d characters of text",
        agent_key,
        session_key,
        len(reply.events),
        ", ".join(f"{kind}={count}" for kind, count in sorted(kinds.items())) or "none",
        len(reply.text),
    )
    return reply


async def _send_input(
    credentials: VectaraCredentials, agent_key: str, session_key: str, body: AgentInput
) -> MessageReply:
    """Send any other input: an ``Interrupt``, a ``Compact``, or client ``ToolOutputs``."""
    async with credentials.get_client() as client:
        reply = await client.send_input(agent_key, session_key, body)
    run_logger().info(
        "Sent %s to Vectara session %s: %d events back",
        body.type,
        session_key,
        len(reply.events),
    )
    return reply


async def _list_events(
    credentials: VectaraCredentials,
    agent_key: str,
    session_key: str,
    page_size: int = 100,
    max_events: int | None = None,
) -> list[AgentEvent]:
    """List a session's events, oldest first, across every page (or the first ``max_events``)."""
    _limit(max_events, "max_events")
    events: list[AgentEvent] = []
    async with credentials.get_client() as client:
        if max_events != 0:
            size = page_size if max_events is None else min(page_size, max_events)
            pages = client.list_events(agent_key, session_key, page_size=size)
            async with aclosing(pages):
                async for event in pages:
                    events.append(event)
                    if len(events) == max_events:
                        break
    run_logger().info("Listed %d events of Vectara session %s", len(events), session_key)
    return events


acreate_session, create_session = task_pair(
    _create_session, name="create_session", cache_policy=NO_CACHE
)
alist_sessions, list_sessions = task_pair(
    _list_sessions, name="list_sessions", cache_policy=NO_CACHE
)
aget_session, get_session = task_pair(_get_session, name="get_session", cache_policy=NO_CACHE)
aupdate_session, update_session = task_pair(
    _update_session, name="update_session", cache_policy=NO_CACHE
)
adelete_session, delete_session = task_pair(
    _delete_session, name="delete_session", cache_policy=NO_CACHE
)
asend_message, send_message = task_pair(_send_message, name="send_message", cache_policy=NO_CACHE)
asend_input, send_input = task_pair(_send_input, name="send_input", cache_policy=NO_CACHE)
alist_events, list_events = task_pair(_list_events, name="list_events", cache_policy=NO_CACHE)
