"""A conversation for scripts: start, turn, turn, press a button by its label, end."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from prefect_sessions.voiceflow.errors import ButtonNotFoundError
from prefect_sessions.voiceflow.models import (
    Action,
    LaunchAction,
    State,
    TextAction,
    TurnConfig,
    TurnResult,
    VoiceflowSession,
)
from prefect_sessions.voiceflow.stream import TraceStream


class ConversationCalls(Protocol):
    """The client calls a conversation makes; :class:`~prefect_sessions.voiceflow.VoiceflowClient`
    has them (typed here so that this module needs nothing from the client module)."""

    async def start_session(
        self, user_id: str, *, environment: str | None = None, traffic_split: bool = False
    ) -> VoiceflowSession: ...

    async def interact(
        self,
        session: VoiceflowSession,
        action: Action | str,
        *,
        variables: Mapping[str, Any] | None = None,
        state: Any = None,
        config: TurnConfig | None = None,
    ) -> TurnResult: ...

    def interact_stream(
        self,
        session: VoiceflowSession,
        action: Action | str,
        *,
        variables: Mapping[str, Any] | None = None,
        state: Any = None,
        config: TurnConfig | None = None,
    ) -> AbstractAsyncContextManager[TraceStream]: ...

    async def get_state(self, user_id: str) -> State: ...

    async def update_variables(self, user_id: str, variables: Mapping[str, Any]) -> State: ...

    async def delete_state(self, user_id: str) -> None: ...


class Conversation:
    """One user's conversation with the agent, kept to a few lines in a script or a flow.

    Example:
        ```python
        async with credentials.get_client() as client:
            async with client.conversation("ada") as chat:
                await chat.launch()
                await chat.say("I need a refund")
                turn = await chat.choose("Track my order")
                print(turn.text)
        ```

    Args:
        client: an open :class:`VoiceflowClient`.
        user_id: the user this conversation belongs to.
        config: per-turn settings applied to every turn.
        delete_state_on_end: delete the user's state when the conversation ends, so the next run
            starts clean (what a test suite wants; turn it off to inspect state afterwards).
    """

    def __init__(
        self,
        client: ConversationCalls,
        user_id: str,
        *,
        config: TurnConfig | None = None,
        delete_state_on_end: bool = True,
    ) -> None:
        self.client = client
        self.user_id = user_id
        self.config = config
        self.delete_state_on_end = delete_state_on_end
        self.session: VoiceflowSession | None = None
        self.turns: list[tuple[Action, TurnResult]] = []

    async def __aenter__(self) -> Conversation:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.end()

    @property
    def last_turn(self) -> TurnResult | None:
        """The agent's answer to the latest action, if any."""
        return self.turns[-1][1] if self.turns else None

    async def start(self) -> VoiceflowSession:
        """Start a fresh session for the user (ending any earlier one)."""
        self.session = await self.client.start_session(self.user_id)
        return self.session

    def _session(self) -> VoiceflowSession:
        if self.session is None:
            raise RuntimeError("start the conversation first: 'await chat.start()' or 'async with'")
        return self.session

    async def send(
        self, action: Action | str, *, variables: Mapping[str, Any] | None = None
    ) -> TurnResult:
        """Send any action and record the turn."""
        action = TextAction(payload=action) if isinstance(action, str) else action
        turn = await self.client.interact(
            self._session(), action, variables=variables, config=self.config
        )
        self.turns.append((action, turn))
        return turn

    async def stream(
        self, action: Action | str, *, variables: Mapping[str, Any] | None = None
    ) -> TraceStream:
        """Send an action over SSE, consume the whole stream, and record the turn."""
        action = TextAction(payload=action) if isinstance(action, str) else action
        async with self.client.interact_stream(
            self._session(), action, variables=variables, config=self.config
        ) as stream:
            async for _ in stream:
                pass
        self.turns.append((action, stream.result))
        return stream

    async def launch(self, **variables: Any) -> TurnResult:
        """Start the agent's flow, setting ``variables`` first."""
        return await self.send(LaunchAction(), variables=variables or None)

    async def say(self, text: str) -> TurnResult:
        """Send what the user says."""
        return await self.send(TextAction(payload=text))

    async def choose(self, label: str) -> TurnResult:
        """Press the button labelled ``label`` (case-insensitive) offered by the last turn."""
        offered = self.last_turn.buttons if self.last_turn else []
        for button in offered:
            if button.name.casefold() == label.casefold():
                return await self.send(button.as_action())
        names = ", ".join(repr(button.name) for button in offered) or "no buttons"
        raise ButtonNotFoundError(
            f"no button labelled {label!r} in the last turn; the agent offered {names}"
        )

    async def state(self) -> State:
        """The user's current state."""
        return await self.client.get_state(self.user_id)

    async def set_variables(self, **variables: Any) -> State:
        """Merge variables into the user's state."""
        return await self.client.update_variables(self.user_id, variables)

    async def end(self) -> None:
        """End the conversation: forget the session key and, if asked, delete the user's state."""
        if self.session is None:
            return
        self.session = None
        if self.delete_state_on_end:
            await self.client.delete_state(self.user_id)
