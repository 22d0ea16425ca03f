"""LiveAvatar as a conversation: a session per conversation, read through its transcript.

LiveAvatar's API takes no typed user turns (people speak to the avatar over LiveKit), so a suite
can ``launch`` a session, whose answer is what the avatar said on joining, and send ``no_reply``
turns, which keep the session alive and answer with what was said since. The session is always
stopped at the end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect_sessions.liveavatar.client import LiveAvatarClient
from prefect_sessions.liveavatar.credentials import LiveAvatarCredentials
from prefect_sessions.liveavatar.models import (
    AvatarPersona,
    FullSessionConfig,
    SessionToken,
    VoiceAgentRef,
)
from prefect_sessions.seam.adapter import (
    ClientAdapter,
    ConnectionSettings,
    ConversationFailure,
    resolve_credentials,
)
from prefect_sessions.seam.turns import Reply, Turn

#: LiveAvatar's public sandbox avatar ("Wayne"): sandbox sessions use no credits.
SANDBOX_AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"


#: Credits a FULL-mode minute costs (LITE: 1), as LiveAvatar documents.
FULL_CREDITS_PER_MINUTE = 2.0


@dataclass
class _Handle:
    session_id: str | None = None
    #: Keep-alive and stop go out with it: each session spends its own rate budget.
    token: SessionToken | None = None
    heard: int = 0
    variables: dict[str, str] = field(default_factory=dict)
    started: float | None = None  # monotonic time the session started
    ended: float | None = None


class LiveAvatarAdapter(ClientAdapter[LiveAvatarClient]):
    """Runs suite turns on LiveAvatar sessions (FULL mode; sandbox unless configured off)."""

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        fields = settings.fields
        self.avatar_id = str(fields.get("avatar_id") or SANDBOX_AVATAR_ID)
        self.context_id = fields.get("context_id")
        self.voice_agent_id = fields.get("voice_agent_id")
        self.sandbox = bool(fields.get("is_sandbox", True))

    async def open_client(self) -> LiveAvatarClient:
        def inline(options: dict[str, Any]) -> LiveAvatarCredentials:
            return LiveAvatarCredentials(api_key=self.settings.api_key, **options)

        credentials = await resolve_credentials(self.settings, LiveAvatarCredentials, inline)
        return credentials.get_client(**self.client_options())

    async def start(self, conversation_id: str, variables: Mapping[str, Any]) -> _Handle:
        # The session itself starts with the `launch` turn, so its greeting is that turn's answer.
        return _Handle(variables={k: str(v) for k, v in variables.items()})

    async def _new_lines(self, handle: _Handle) -> list[str]:
        assert handle.session_id is not None
        transcript = await self.client.get_transcript(handle.session_id)
        said = [e.transcript for e in transcript.entries[handle.heard :] if e.role == "avatar"]
        handle.heard = len(transcript.entries)
        return said

    async def turn(self, handle: _Handle, turn: Turn) -> Reply:
        if turn.kind == "launch":
            if handle.session_id is not None:
                raise ConversationFailure("the LiveAvatar session is already launched")
            persona: dict[str, Any] = (
                {"voice_agent": VoiceAgentRef(id=self.voice_agent_id)}
                if self.voice_agent_id
                else {"avatar_persona": AvatarPersona(context_id=self.context_id)}
            )
            config = FullSessionConfig(
                avatar_id=self.avatar_id,
                **persona,
                dynamic_variables=handle.variables or None,
                is_sandbox=self.sandbox,
            )
            token = await self.client.create_session_token(config)
            handle.session_id, handle.token = token.session_id, token
            await self.client.start_session(token)
            handle.started = time.monotonic()
        elif turn.kind == "no_reply":
            if handle.session_id is None:
                raise ConversationFailure("launch the LiveAvatar session before other turns")
            await self.client.keep_alive(handle.session_id, session_token=handle.token)
        else:
            raise ConversationFailure(f"LiveAvatar cannot take a {turn.kind!r} turn")
        return Reply(messages=await self._new_lines(handle))

    async def variables(self, handle: _Handle) -> dict[str, Any]:
        return dict(handle.variables)

    async def end(self, handle: _Handle) -> None:
        if handle.session_id is not None:
            try:
                await self.client.stop_session(
                    handle.session_id, "USER_CLOSED", session_token=handle.token
                )
            finally:
                handle.ended = time.monotonic()

    def usage(self, handle: _Handle) -> dict[str, float]:
        """The session's minutes from start to stop, and the credits they cost: FULL mode spends
        2 credits a minute (the vendor's pricing page); a sandbox session spends none. Measured
        here, so an estimate: the vendor bills by its own clock."""
        if handle.started is None:
            return {}
        minutes = ((handle.ended or time.monotonic()) - handle.started) / 60
        credits = 0.0 if self.sandbox else minutes * FULL_CREDITS_PER_MINUTE
        return {"session_minutes": round(minutes, 4), "credits": round(credits, 4)}
