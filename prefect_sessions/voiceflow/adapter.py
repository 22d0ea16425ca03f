"""Voiceflow as a conversation: a v4 session per conversation, one interact call per turn."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect_sessions.seam.adapter import (
    ClientAdapter,
    ConnectionSettings,
    ConversationFailure,
    resolve_credentials,
)
from prefect_sessions.seam.turns import Reply, Turn
from prefect_sessions.voiceflow.client import STATE_USER_ID_MAX, VoiceflowClient
from prefect_sessions.voiceflow.credentials import VoiceflowCredentials
from prefect_sessions.voiceflow.models import (
    Action,
    Entity,
    EventAction,
    IntentAction,
    LaunchAction,
    NoReplyAction,
    TextAction,
    TurnResult,
    VoiceflowSession,
)


def _user_id(conversation_id: str) -> str:
    # The state routes take at most 128 characters; keep long IDs unique with a hash suffix.
    if len(conversation_id) <= STATE_USER_ID_MAX:
        return conversation_id
    digest = hashlib.sha256(conversation_id.encode()).hexdigest()[:16]
    return f"{conversation_id[: STATE_USER_ID_MAX - 17]}-{digest}"


@dataclass
class _Handle:
    session: VoiceflowSession
    pending_variables: dict[str, Any] | None
    last: TurnResult | None = None
    history: list[str] = field(default_factory=list)


async def credentials_from(settings: ConnectionSettings) -> VoiceflowCredentials:
    """The credentials a run uses: a block (given or saved, with overrides), or inline settings."""

    def inline(options: dict[str, Any]) -> VoiceflowCredentials:
        if "environment" in settings.fields:
            options["environment"] = settings.fields["environment"]
        return VoiceflowCredentials(
            api_key=settings.api_key, project_id=settings.fields.get("project_id"), **options
        )

    return await resolve_credentials(settings, VoiceflowCredentials, inline)


class VoiceflowAdapter(ClientAdapter[VoiceflowClient]):
    """Runs suite turns on Voiceflow. A conversation's user ID is its ID (shortened if needed).

    Every conversation starts a new session, whose launch replaces the user's state; with the
    suite's ``cleanup: true`` the state is also deleted at the end, at the cost of one request
    per conversation against the key's limit."""

    async def open_client(self) -> VoiceflowClient:
        return (await credentials_from(self.settings)).get_client(**self.client_options())

    async def start(self, conversation_id: str, variables: Mapping[str, Any]) -> _Handle:
        session = await self.client.start_session(_user_id(conversation_id))
        return _Handle(session, dict(variables) or None)

    def _action(self, handle: _Handle, turn: Turn) -> Action:
        value = turn.value
        if turn.kind == "launch":
            return LaunchAction(payload=value or None)
        if turn.kind == "text":
            return TextAction(payload=value)
        if turn.kind == "event":
            return EventAction.named(value)
        if turn.kind == "intent":
            entities = [Entity(name=k, value=str(v)) for k, v in value.get("entities", {}).items()]
            return IntentAction.named(value["name"], entities=entities)
        if turn.kind == "no_reply":
            return NoReplyAction()
        if turn.kind == "button":
            offered = handle.last.buttons if handle.last else []
            for button in offered:
                if button.name.casefold() == str(value).casefold():
                    return button.as_action()
            names = [button.name for button in offered]
            raise ConversationFailure(f"no button labelled {value!r} to press; offered {names}")
        raise ConversationFailure(f"Voiceflow cannot take a {turn.kind!r} turn")

    async def turn(self, handle: _Handle, turn: Turn) -> Reply:
        if turn.kind == "set_variables":
            await self.client.update_variables(handle.session.user_id, turn.value)
            return Reply()
        variables, handle.pending_variables = handle.pending_variables, None
        result = await self.client.interact(
            handle.session, self._action(handle, turn), variables=variables
        )
        handle.last = result
        return Reply(
            messages=result.messages,
            trace_types=result.trace_types,
            buttons=[button.name for button in result.buttons],
            links=[button.name for button in result.buttons if button.url is not None],
            ended=result.ended,
            latency_ms=result.latency_ms or 0.0,
        )

    async def variables(self, handle: _Handle) -> dict[str, Any]:
        state = await self.client.get_state(handle.session.user_id)
        return dict(state.variables)

    async def end(self, handle: _Handle) -> None:
        if self.settings.cleanup:
            await self.client.delete_state(handle.session.user_id)
