"""Prefect tasks for LiveAvatar sessions, each an async/sync pair (``astart_session``/
``start_session``).

Every task takes the credentials block and opens its own client. None is cached: each reads or
changes a live session. The tasks that return tokens (``create_session_token``, ``start_session``)
never persist their results, so no token reaches Prefect's result storage.
"""

from __future__ import annotations

from uuid import UUID

from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from prefect_sessions.liveavatar.credentials import LiveAvatarCredentials
from prefect_sessions.liveavatar.models import (
    FullSessionConfig,
    LiteSessionConfig,
    SessionEndReason,
    SessionEntry,
    SessionListType,
    SessionToken,
    StartedSession,
    Transcript,
)
from prefect_sessions.logs import run_logger
from prefect_sessions.task_pairs import task_pair


async def _create_session_token(
    credentials: LiveAvatarCredentials, config: FullSessionConfig | LiteSessionConfig
) -> SessionToken:
    """Mint a LiveAvatar session token for a FULL or LITE configuration (nothing starts yet)."""
    async with credentials.get_client() as client:
        token = await client.create_session_token(config)
    sandbox = " sandbox" if config.is_sandbox else ""
    run_logger().info(
        "Created a %s%s session token for session %s", config.mode, sandbox, token.session_id
    )
    return token


async def _start_session(
    credentials: LiveAvatarCredentials, session_token: SessionToken | SecretStr
) -> StartedSession:
    """Start a LiveAvatar session with its token; it costs credits until it is stopped."""
    async with credentials.get_client() as client:
        started = await client.start_session(session_token)
    run_logger().info(
        "Started LiveAvatar session %s (LITE websocket: %s, maximum duration: %s s)",
        started.session_id,
        "yes" if started.ws_url else "no",
        started.max_session_duration if started.max_session_duration is not None else "default",
    )
    return started


async def _keep_alive(credentials: LiveAvatarCredentials, session_id: str | UUID) -> None:
    """Reset a LiveAvatar session's idle timeout."""
    async with credentials.get_client() as client:
        await client.keep_alive(session_id)
    run_logger().info("Kept LiveAvatar session %s alive", session_id)


async def _stop_session(
    credentials: LiveAvatarCredentials,
    session_id: str | UUID,
    reason: SessionEndReason = "USER_CLOSED",
) -> None:
    """Stop a LiveAvatar session and record why (safe to repeat)."""
    async with credentials.get_client() as client:
        await client.stop_session(session_id, reason)
    run_logger().info("Stopped LiveAvatar session %s (%s)", session_id, reason)


async def _list_sessions(
    credentials: LiveAvatarCredentials,
    type: SessionListType = "active",
    avatar_id: str | None = None,
    embed_id: str | None = None,
    context_id: str | None = None,
) -> list[SessionEntry]:
    """List every active (or historic) LiveAvatar session, all pages."""
    async with credentials.get_client() as client:
        sessions = await client.list_sessions(
            type, avatar_id=avatar_id, embed_id=embed_id, context_id=context_id
        )
    run_logger().info("Listed %d %s LiveAvatar sessions", len(sessions), type)
    return sessions


async def _get_session(credentials: LiveAvatarCredentials, session_id: str | UUID) -> SessionEntry:
    """Read one LiveAvatar session; an ended one carries its end time and reason."""
    async with credentials.get_client() as client:
        session = await client.get_session(session_id)
    state = f"ended ({session.end_reason})" if session.end_at or session.end_reason else "active"
    run_logger().info("LiveAvatar session %s is %s", session.id, state)
    return session


async def _get_transcript(
    credentials: LiveAvatarCredentials,
    session_id: str | UUID,
    start_timestamp: int | None = None,
    end_timestamp: int | None = None,
) -> Transcript:
    """Fetch a LiveAvatar session's transcript, following every page."""
    async with credentials.get_client() as client:
        transcript = await client.get_transcript(
            session_id, start_timestamp=start_timestamp, end_timestamp=end_timestamp
        )
    run_logger().info(
        "Fetched %d transcript entries of LiveAvatar session %s in %d requests",
        len(transcript.entries),
        transcript.session_id,
        transcript.pages,
    )
    return transcript


acreate_session_token, create_session_token = task_pair(
    _create_session_token,
    name="create LiveAvatar session token",
    cache_policy=NO_CACHE,
    persist_result=False,
)
astart_session, start_session = task_pair(
    _start_session, name="start LiveAvatar session", cache_policy=NO_CACHE, persist_result=False
)
akeep_alive, keep_alive = task_pair(
    _keep_alive, name="keep LiveAvatar session alive", cache_policy=NO_CACHE
)
astop_session, stop_session = task_pair(
    _stop_session, name="stop LiveAvatar session", cache_policy=NO_CACHE
)
alist_sessions, list_sessions = task_pair(
    _list_sessions, name="list LiveAvatar sessions", cache_policy=NO_CACHE
)
aget_session, get_session = task_pair(
    _get_session, name="get LiveAvatar session", cache_policy=NO_CACHE
)
aget_transcript, get_transcript = task_pair(
    _get_transcript, name="get LiveAvatar transcript", cache_policy=NO_CACHE
)
