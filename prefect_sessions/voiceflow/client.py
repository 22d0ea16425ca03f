"""Voiceflow's Conversations API, one method per endpoint, over the package's HTTP engine."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr, TypeAdapter, ValidationError

from prefect_sessions.errors import AuthenticationError, ConfigurationError, NotFoundError
from prefect_sessions.http import HttpClient, SecretHeaderAuth
from prefect_sessions.http.pacing import credential_fingerprint
from prefect_sessions.voiceflow.conversation import Conversation
from prefect_sessions.voiceflow.errors import SessionKeyRejectedError
from prefect_sessions.voiceflow.models import (
    Action,
    InteractRequest,
    State,
    TextAction,
    TurnConfig,
    TurnResult,
    UserID,
    VoiceflowSession,
    parse_trace,
)
from prefect_sessions.voiceflow.stream import TraceStream

_user_id = TypeAdapter(UserID)

#: The state routes accept shorter user IDs than session start (128 vs 256 in the current spec).
STATE_USER_ID_MAX = 128


def _checked_user_id(user_id: str, *, max_length: int = 256) -> str:
    try:
        checked = _user_id.validate_python(user_id)
    except ValidationError:
        checked = None
    if checked is None or len(checked) > max_length:
        got = f"{len(user_id)} characters" if isinstance(user_id, str) else type(user_id).__name__
        raise ConfigurationError(
            f"user_id must be a string of 1 to {max_length} characters, got {got}: give each "
            "conversation a short unique ID, e.g. 'nightly-0042'"
        )
    return checked


def _state_user_id(user_id: str) -> str:
    return _checked_user_id(user_id, max_length=STATE_USER_ID_MAX)


def _as_action(action: Action | str) -> Action:
    return TextAction(payload=action) if isinstance(action, str) else action


class _LatestSessions:
    """Which session key is the newest for each user, so a 401 on an older key can say why.

    Keys are remembered by fingerprint only; the table is bounded so a long batch cannot grow it
    without limit.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._latest: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, scope: tuple[str, str, str], key: SecretStr) -> None:
        with self._lock:
            self._latest[scope] = credential_fingerprint(key.get_secret_value())
            self._latest.move_to_end(scope)
            while len(self._latest) > self._capacity:
                self._latest.popitem(last=False)

    def superseded(self, scope: tuple[str, str, str], key: SecretStr) -> bool | None:
        with self._lock:
            latest = self._latest.get(scope)
        if latest is None:
            return None
        return latest != credential_fingerprint(key.get_secret_value())


_latest_sessions = _LatestSessions()


class VoiceflowClient:
    """Async client for one Voiceflow project. Use it as an async context manager.

    Args:
        http: the engine client carrying the API key.
        project_id: the project (agent) ID.
        environment: the environment alias for new sessions, or ``None`` for the traffic split.
    """

    def __init__(self, http: HttpClient, *, project_id: str, environment: str | None) -> None:
        self.http = http
        self.project_id = project_id
        self.environment = environment

    def __repr__(self) -> str:
        return f"VoiceflowClient(project_id={self.project_id!r}, base_url='{self.http.base_url}')"

    async def __aenter__(self) -> VoiceflowClient:
        await self.http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.aclose()

    @property
    def _state_headers(self) -> dict[str, str]:
        return {"projectID": self.project_id}

    def _scope(self, user_id: str) -> tuple[str, str, str]:
        return (str(self.http.base_url), self.project_id, user_id)

    # -- sessions -------------------------------------------------------------------------------

    async def start_session(
        self, user_id: str, *, environment: str | None = None, traffic_split: bool = False
    ) -> VoiceflowSession:
        """Start a v4 session for ``user_id`` and return it with its session key.

        A session already open for the same user ends, and its key stops working.

        Args:
            user_id: 1 to 256 characters; one conversation state per user.
            environment: an environment alias for this session (default: the credentials').
            traffic_split: route by the project's traffic split instead of one environment.
        """
        user_id = _checked_user_id(user_id)
        target = None if traffic_split else (environment or self.environment)
        project = quote(self.project_id, safe="")
        if target is None:
            path = f"/v4/project/{project}/session"
        else:
            path = f"/v4/project/{project}/environment/{quote(target, safe='')}/session"
        # Replaying a start is safe: the outcome is still one open session with a key we hold.
        try:
            response = await self.http.request(
                "POST", path, operation="start session", idempotent=True, json={"userID": user_id}
            )
        except NotFoundError as exc:
            if target is None:
                raise
            raise exc.recast(
                NotFoundError,
                f"project {self.project_id} has no environment '{target}' (or it is not "
                "published there); projects made before environments have 'development' and "
                "'production', not 'main': set the credentials block's environment to one of "
                "them, or leave it empty to route by the project's traffic split",
            ) from None
        key = self.http.read_json(response, "start session", expect=dict).get("sessionKey")
        if not isinstance(key, str) or not key:
            raise self.http.unreadable(response, "start session", "no sessionKey in the answer")
        session = VoiceflowSession(
            user_id=user_id,
            session_key=SecretStr(key),
            project_id=self.project_id,
            environment=target,
        )
        _latest_sessions.record(self._scope(user_id), session.session_key)
        return session

    # -- turns ----------------------------------------------------------------------------------

    def _interact_body(
        self,
        action: Action | str,
        variables: Mapping[str, Any] | None,
        state: Any,
        config: TurnConfig | None,
    ) -> dict[str, Any]:
        request = InteractRequest(
            action=_as_action(action),
            variables=dict(variables) if variables is not None else None,
            state=state,
            config=config,
        )
        return request.to_wire()

    def _session_auth(self, session: VoiceflowSession) -> SecretHeaderAuth:
        return SecretHeaderAuth("authorization", session.session_key)

    def _rejected(
        self, error: AuthenticationError, session: VoiceflowSession
    ) -> SessionKeyRejectedError:
        superseded = _latest_sessions.superseded(self._scope(session.user_id), session.session_key)
        if superseded:
            why = (
                f"this session key was superseded: a newer session was started for user "
                f"{session.user_id!r}, which ends the old one; use the newer session"
            )
        else:
            why = (
                "the session key was refused; it may have been superseded by a newer session for "
                f"user {session.user_id!r}, or expired: start a new session"
            )
        return SessionKeyRejectedError(
            **{**error._state(), "detail": why, "superseded": superseded}
        )

    async def interact(
        self,
        session: VoiceflowSession,
        action: Action | str,
        *,
        variables: Mapping[str, Any] | None = None,
        state: Any = None,
        config: TurnConfig | None = None,
    ) -> TurnResult:
        """Run one turn (``POST /v4/interact``) and return the agent's traces.

        Args:
            session: from :meth:`start_session`; its key authorises the call.
            action: what the user did; a plain string is a text message.
            variables: variables to set on the session before the turn runs.
            state: a state override, rarely needed.
            config: per-turn settings (completion events, TTS, excluded trace types, ...).

        Raises:
            SessionKeyRejectedError: the key was refused (usually superseded by a newer session).
            OutcomeUnknownError: the turn was sent but no readable answer came back.
        """
        body = self._interact_body(action, variables, state, config)
        try:
            response = await self.http.request(
                "POST",
                "/v4/interact",
                operation="interact",
                idempotent=False,
                json=body,
                auth=self._session_auth(session),
            )
        except AuthenticationError as exc:
            raise self._rejected(exc, session) from exc
        payload = self.http.read_json(response, "interact", expect=dict)
        traces = payload.get("traces")
        if not isinstance(traces, list):
            raise self.http.unreadable(response, "interact", "no 'traces' list in the answer")
        turn = self._traces(response, "interact", traces)
        turn.latency_ms = response.elapsed.total_seconds() * 1000
        return turn

    @asynccontextmanager
    async def interact_stream(
        self,
        session: VoiceflowSession,
        action: Action | str,
        *,
        variables: Mapping[str, Any] | None = None,
        state: Any = None,
        config: TurnConfig | None = None,
    ) -> AsyncIterator[TraceStream]:
        """Run one turn over SSE (``POST /v4/interact/stream``), yielding traces as they arrive.

        Example:
            ```python
            config = TurnConfig(completion_events=True)
            async with client.interact_stream(session, "Hi", config=config) as stream:
                async for trace in stream:
                    print(trace.type)
            print(stream.result.text)  # completion pieces assembled into the message
            ```
        """
        body = self._interact_body(action, variables, state, config)
        try:
            async with self.http.stream(
                "POST",
                "/v4/interact/stream",
                operation="interact stream",
                idempotent=False,
                json=body,
                headers={"accept": "text/event-stream"},
                auth=self._session_auth(session),
            ) as response:
                yield TraceStream(
                    response, provider=self.http.provider, operation="interact stream"
                )
        except AuthenticationError as exc:
            raise self._rejected(exc, session) from exc

    async def legacy_interact(
        self,
        user_id: str,
        action: Action | str,
        *,
        config: TurnConfig | None = None,
        variables: Mapping[str, Any] | None = None,
        version_id: str | None = None,
    ) -> TurnResult:
        """Run one turn on the deprecated stateful route ``POST /state/user/{userID}/interact``.

        Authorised by the API key; the version is the ``version_id`` given, else the credentials'
        environment alias.
        """
        user_id = _state_user_id(user_id)
        body: dict[str, Any] = {"action": _as_action(action).to_wire()}
        if config is not None:
            body["config"] = config.to_wire()
        if variables is not None:
            body["state"] = {"variables": dict(variables)}
        headers = dict(self._state_headers)
        version = version_id or self.environment
        if version:
            headers["versionID"] = version
        response = await self.http.request(
            "POST",
            f"/state/user/{quote(user_id, safe='')}/interact",
            operation="legacy interact",
            idempotent=False,
            json=body,
            headers=headers,
        )
        traces = self.http.read_json(response, "legacy interact")
        if not isinstance(traces, list):
            raise self.http.unreadable(
                response, "legacy interact", "the answer was not a list of traces"
            )
        return self._traces(response, "legacy interact", traces)

    # -- state ----------------------------------------------------------------------------------

    async def get_state(self, user_id: str) -> State:
        """The user's conversation state (stack, storage, variables); empty if there is none."""
        user_id = _state_user_id(user_id)
        response = await self.http.request(
            "GET",
            f"/state/user/{quote(user_id, safe='')}",
            operation="get state",
            idempotent=True,
            headers=self._state_headers,
        )
        payload = self.http.read_json(response, "get state")
        return self._state(response, "get state", payload or {})

    async def update_state(self, user_id: str, state: State | Mapping[str, Any]) -> State:
        """Replace the user's whole state (``PUT``). ``State()`` resets it."""
        user_id = _state_user_id(user_id)
        body = (
            state.to_wire() if isinstance(state, State) else State.model_validate(state).to_wire()
        )
        response = await self.http.request(
            "PUT",
            f"/state/user/{quote(user_id, safe='')}",
            operation="update state",
            idempotent=True,
            json=body,
            headers=self._state_headers,
        )
        return self._state(response, "update state", self.http.read_json(response, "update state"))

    async def update_variables(self, user_id: str, variables: Mapping[str, Any]) -> State:
        """Merge ``variables`` into the user's variables (a shallow merge); return the new state."""
        user_id = _state_user_id(user_id)
        response = await self.http.request(
            "PATCH",
            f"/state/user/{quote(user_id, safe='')}/variables",
            operation="update variables",
            # The same merge applied twice gives the same state.
            idempotent=True,
            json=dict(variables),
            headers=self._state_headers,
        )
        return self._state(
            response, "update variables", self.http.read_json(response, "update variables")
        )

    async def delete_state(self, user_id: str) -> None:
        """Delete the user's state and session data."""
        user_id = _state_user_id(user_id)
        await self.http.request(
            "DELETE",
            f"/state/user/{quote(user_id, safe='')}",
            operation="delete state",
            idempotent=True,
            headers=self._state_headers,
        )

    async def emit_session_event(self, session_id: str, action: Action | str) -> None:
        """Send an action to a live session, where it fires a trigger.

        It reaches the session only while that session has an open realtime connection (a voice
        call, the websocket of ``/v4/interact/socket``); with none, it has no effect. Voiceflow
        answers 201 either way, so a return here does not mean the action was delivered. While
        the agent is busy, at most one action is queued.
        """
        if not session_id:
            raise ConfigurationError("session_id must not be empty: pass the live session's ID")
        project, session = quote(self.project_id, safe=""), quote(session_id, safe="")
        path = f"/v2/project/{project}/session/{session}/event"
        await self.http.request(
            "POST",
            path,
            operation="emit session event",
            idempotent=False,
            json={"action": _as_action(action).to_wire()},
        )

    def conversation(self, user_id: str, **options: Any) -> Conversation:
        """A :class:`Conversation` for ``user_id`` on this client (see its options)."""
        return Conversation(self, user_id, **options)

    # -- reading answers --------------------------------------------------------------------------

    def _traces(self, response: httpx.Response, operation: str, raw: list[Any]) -> TurnResult:
        try:
            return TurnResult(traces=[parse_trace(item) for item in raw])
        except ValueError as exc:
            raise self.http.unreadable(response, operation, str(exc)) from exc

    def _state(self, response: httpx.Response, operation: str, payload: Any) -> State:
        try:
            return State.model_validate(payload)
        except ValidationError as exc:
            raise self.http.unreadable(
                response, operation, f"unexpected state shape ({exc.error_count()} errors)"
            ) from exc
