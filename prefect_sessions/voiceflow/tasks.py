"""Prefect tasks for Voiceflow, each an async/sync pair (``ainteract`` / ``interact``).

A task takes the credentials block, opens its own client (so it works on any event loop Prefect
runs it on) and shares the process-wide pacer of its API key. None of them caches: a turn or a state
change must happen every time it is asked for. Tasks that return a session key do not persist their
result, so the key never lands in result storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.cache_policies import NO_CACHE

from prefect_sessions.logs import run_logger
from prefect_sessions.task_pairs import task_pair
from prefect_sessions.voiceflow.credentials import VoiceflowCredentials
from prefect_sessions.voiceflow.models import (
    Action,
    State,
    TurnConfig,
    TurnResult,
    VoiceflowSession,
)


async def _start_session(
    credentials: VoiceflowCredentials,
    user_id: str,
    environment: str | None = None,
    traffic_split: bool = False,
) -> VoiceflowSession:
    """Start a Voiceflow v4 session for a user and return it with its session key.

    Args:
        credentials: the project's Voiceflow credentials block.
        user_id: 1 to 256 characters; a session already open for this user ends.
        environment: an environment alias for this session (default: the block's).
        traffic_split: route by the project's traffic split instead of one environment.
    """
    async with credentials.get_client() as client:
        session = await client.start_session(
            user_id, environment=environment, traffic_split=traffic_split
        )
    where = session.environment or "traffic split"
    run_logger().info("Started a Voiceflow session for user %r (%s)", user_id, where)
    return session


astart_session, start_session = task_pair(
    _start_session, name="voiceflow-start-session", cache_policy=NO_CACHE, persist_result=False
)


async def _interact(
    credentials: VoiceflowCredentials,
    session: VoiceflowSession,
    action: Action | str,
    variables: dict[str, Any] | None = None,
    config: TurnConfig | None = None,
    stream: bool = False,
) -> TurnResult:
    """Run one conversation turn and return the agent's traces.

    Args:
        credentials: the project's Voiceflow credentials block.
        session: the session from start_session.
        action: what the user did; a plain string is a text message.
        variables: variables to set on the session before the turn runs.
        config: per-turn settings (completion events, TTS, excluded trace types).
        stream: use the SSE endpoint (completion pieces are assembled into messages).
    """
    async with credentials.get_client() as client:
        if stream:
            async with client.interact_stream(
                session, action, variables=variables, config=config
            ) as trace_stream:
                async for _ in trace_stream:
                    pass
            turn = trace_stream.result
        else:
            turn = await client.interact(session, action, variables=variables, config=config)
    run_logger().info(
        "Voiceflow turn for user %r: %d traces (%s)",
        session.user_id,
        len(turn.traces),
        ", ".join(turn.trace_types) or "none",
    )
    return turn


ainteract, interact = task_pair(_interact, name="voiceflow-interact", cache_policy=NO_CACHE)


async def _legacy_interact(
    credentials: VoiceflowCredentials,
    user_id: str,
    action: Action | str,
    variables: dict[str, Any] | None = None,
    config: TurnConfig | None = None,
    version_id: str | None = None,
) -> TurnResult:
    """Run one turn on Voiceflow's deprecated stateful interact route (API-key authorised).

    Args:
        credentials: the project's Voiceflow credentials block.
        user_id: the user whose conversation takes the turn (1 to 128 characters).
        action: what the user did; a plain string is a text message.
        variables: variables to set in the user's state with this turn.
        config: per-turn settings (TTS, SSML stripping, excluded trace types).
        version_id: the version or alias to run (default: the block's environment).
    """
    async with credentials.get_client() as client:
        turn = await client.legacy_interact(
            user_id, action, config=config, variables=variables, version_id=version_id
        )
    run_logger().info(
        "Voiceflow legacy turn for user %r: %d traces (%s)",
        user_id,
        len(turn.traces),
        ", ".join(turn.trace_types) or "none",
    )
    return turn


alegacy_interact, legacy_interact = task_pair(
    _legacy_interact, name="voiceflow-legacy-interact", cache_policy=NO_CACHE
)


async def _get_state(credentials: VoiceflowCredentials, user_id: str) -> State:
    """Read a user's conversation state (stack, storage, variables).

    Args:
        credentials: the project's Voiceflow credentials block.
        user_id: the user whose state to read.
    """
    async with credentials.get_client() as client:
        state = await client.get_state(user_id)
    run_logger().info(
        "Read Voiceflow state of user %r: %d variables", user_id, len(state.variables)
    )
    return state


aget_state, get_state = task_pair(_get_state, name="voiceflow-get-state", cache_policy=NO_CACHE)


async def _update_state(
    credentials: VoiceflowCredentials, user_id: str, state: State | dict[str, Any]
) -> State:
    """Replace a user's whole conversation state.

    Args:
        credentials: the project's Voiceflow credentials block.
        user_id: the user whose state to replace.
        state: the new state; an empty State resets the conversation.
    """
    async with credentials.get_client() as client:
        new_state = await client.update_state(user_id, state)
    run_logger().info("Replaced Voiceflow state of user %r", user_id)
    return new_state


aupdate_state, update_state = task_pair(
    _update_state, name="voiceflow-update-state", cache_policy=NO_CACHE
)


async def _update_variables(
    credentials: VoiceflowCredentials, user_id: str, variables: Mapping[str, Any]
) -> State:
    """Merge variables into a user's conversation state (a shallow merge).

    Args:
        credentials: the project's Voiceflow credentials block.
        user_id: the user whose variables to update.
        variables: the variables to set; others are left as they are.
    """
    async with credentials.get_client() as client:
        state = await client.update_variables(user_id, variables)
    run_logger().info(
        "Updated %d Voiceflow variables of user %r: %s",
        len(variables),
        user_id,
        ", ".join(sorted(variables)),
    )
    return state


aupdate_variables, update_variables = task_pair(
    _update_variables, name="voiceflow-update-variables", cache_policy=NO_CACHE
)


async def _delete_state(credentials: VoiceflowCredentials, user_id: str) -> None:
    """Delete a user's conversation state and session data.

    Args:
        credentials: the project's Voiceflow credentials block.
        user_id: the user whose state to delete.
    """
    async with credentials.get_client() as client:
        await client.delete_state(user_id)
    run_logger().info("Deleted Voiceflow state of user %r", user_id)


adelete_state, delete_state = task_pair(
    _delete_state, name="voiceflow-delete-state", cache_policy=NO_CACHE
)


async def _emit_session_event(
    credentials: VoiceflowCredentials, session_id: str, action: Action | str
) -> None:
    """Send an action to a live session, where it fires a trigger; it has an effect only while
    that session has an open realtime connection (a voice call, a websocket), and Voiceflow does
    not say whether it had one.

    Args:
        credentials: the project's Voiceflow credentials block.
        session_id: the live session's ID.
        action: the action to send, e.g. EventAction.named("checkout_completed").
    """
    async with credentials.get_client() as client:
        await client.emit_session_event(session_id, action)
    kind = action if isinstance(action, str) else action.type
    run_logger().info(
        "Sent a %r action to Voiceflow session %r; accepted, but it takes effect only if that "
        "session has an open realtime connection (Voiceflow does not say whether it does)",
        kind,
        session_id,
    )


aemit_session_event, emit_session_event = task_pair(
    _emit_session_event, name="voiceflow-emit-session-event", cache_policy=NO_CACHE
)
