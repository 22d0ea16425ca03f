"""A LiveAvatar session as an async context manager that always stops it.

Sessions cost credits while they are open and LiveAvatar only reaps an abandoned one after its
idle timeout, so leaving the ``async with`` block stops the session whatever the reason: normal
exit, an exception, or cancellation (a Prefect timeout, a cancelled flow run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from uuid import UUID

import anyio
from pydantic import SecretStr

from prefect_sessions.errors import ConfigurationError, ProviderError, ProviderUnavailableError
from prefect_sessions.liveavatar.errors import PROVIDER
from prefect_sessions.liveavatar.lite import LiteSocket
from prefect_sessions.liveavatar.models import (
    FullSessionConfig,
    LiteSessionConfig,
    SessionEndReason,
    SessionEntry,
    SessionToken,
    StartedSession,
    Transcript,
    checked_end_reason,
)
from prefect_sessions.logs import run_logger


class SessionCalls(Protocol):
    """The client calls a session makes; :class:`~prefect_sessions.liveavatar.LiveAvatarClient`
    has them (typed here so that the session needs nothing from the client module)."""

    async def create_session_token(
        self, config: FullSessionConfig | LiteSessionConfig | Mapping[str, Any]
    ) -> SessionToken: ...

    async def start_session(self, session_token: SessionToken | SecretStr) -> StartedSession: ...

    async def stop_session(
        self,
        session_id: str | UUID | None = None,
        reason: SessionEndReason = "USER_CLOSED",
        *,
        session_token: SessionToken | SecretStr | None = None,
    ) -> None: ...

    async def get_session(self, session_id: str | UUID) -> SessionEntry: ...

    async def keep_alive(
        self,
        session_id: str | UUID | None = None,
        *,
        session_token: SessionToken | SecretStr | None = None,
    ) -> None: ...

    async def get_transcript(
        self,
        session_id: str | UUID,
        *,
        start_timestamp: int | None = None,
        end_timestamp: int | None = None,
    ) -> Transcript: ...


class LiveAvatarSession:
    """Mint a token and start a session on entry; stop it on exit, always.

    The end reason says how the block ended: ``reason_on_success`` after a normal exit,
    ``reason_on_error`` after an exception, ``reason_on_cancel`` after cancellation (any
    ``BaseException`` that is not an ``Exception``: cancellation, timeouts, interrupts). Calling
    :meth:`stop` earlier chooses the reason yourself.

    If start itself fails, the session is stopped too: a start whose answer was lost may still
    have opened it.

    Args:
        client: an open :class:`LiveAvatarClient`.
        config: the FULL or LITE configuration.
        reason_on_success: the end reason after a normal exit (see above).
        reason_on_error: the end reason after an exception.
        reason_on_cancel: the end reason after cancellation.
        stop_timeout: seconds the final stop may take; the stop runs shielded from
            cancellation, so a cancelled flow still stops its session.

    Example:
        ```python
        async with client.session(config) as session:
            await session.keep_alive()
            transcript = await session.transcript()
        ```
    """

    def __init__(
        self,
        client: SessionCalls,
        config: FullSessionConfig | LiteSessionConfig | Mapping[str, Any],
        *,
        reason_on_success: SessionEndReason = "USER_CLOSED",
        reason_on_error: SessionEndReason = "SERVER_ERROR",
        reason_on_cancel: SessionEndReason = "USER_DISCONNECTED",
        stop_timeout: float = 30.0,
    ) -> None:
        if not stop_timeout > 0:
            raise ConfigurationError("stop_timeout must be a positive number of seconds")
        self._client = client
        self._config = config
        self._reasons = (
            checked_end_reason(reason_on_success),
            checked_end_reason(reason_on_error),
            checked_end_reason(reason_on_cancel),
        )
        self._stop_timeout = stop_timeout
        self.token: SessionToken | None = None
        self.started: StartedSession | None = None
        #: Why the session ended, once it has: the reason sent, or the one LiveAvatar recorded
        #: when the session had already ended (a timeout, a stop whose answer was lost).
        self.stopped_with: str | None = None

    def __repr__(self) -> str:
        session_id = self.token.session_id if self.token else None
        return (
            f"{type(self).__name__}(session_id={session_id!r}, stopped_with={self.stopped_with!r})"
        )

    @property
    def session_id(self) -> str:
        """The session's ID (known once the token is minted)."""
        if self.token is None:
            raise RuntimeError("the session has no ID yet: enter 'async with' first")
        return self.token.session_id

    def _require_started(self) -> StartedSession:
        if self.started is None:
            raise RuntimeError("the session is not started: use it inside 'async with'")
        return self.started

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> LiveAvatarSession:
        self.token = await self._client.create_session_token(self._config)
        try:
            self.started = await self._client.start_session(self.token)
        except BaseException as exc:
            await self._stop_on_exit(exc)
            raise
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        await self._stop_on_exit(exc)

    async def stop(self, reason: SessionEndReason = "USER_CLOSED") -> None:
        """Stop the session now with ``reason``; leaving the block then stops nothing more."""
        if self.stopped_with is None:
            await self._ensure_stopped(checked_end_reason(reason))

    async def _ensure_stopped(self, reason: SessionEndReason) -> None:
        try:
            await self._client.stop_session(self.session_id, reason, session_token=self.token)
        except ProviderError as error:
            # A stop retried after a lost answer finds the session already ended by the first
            # attempt (or by a timeout); the session's record says whether it is over.
            try:
                entry = await self._client.get_session(self.session_id)
            except ProviderError:
                raise error from None
            if entry.end_at is None and entry.end_reason is None:
                raise
            self.stopped_with = entry.end_reason or reason
        else:
            self.stopped_with = reason

    def _reason_for(self, exc: BaseException | None) -> SessionEndReason:
        on_success, on_error, on_cancel = self._reasons
        if exc is None:
            return on_success
        return on_error if isinstance(exc, Exception) else on_cancel

    async def _stop_on_exit(self, exc: BaseException | None) -> None:
        if self.stopped_with is not None or self.token is None:
            return
        session_id = self.token.session_id
        with anyio.move_on_after(self._stop_timeout, shield=True) as scope:
            try:
                await self._ensure_stopped(self._reason_for(exc))
            except ProviderError as error:
                if exc is None:
                    raise
                # Do not hide why the block failed; say loudly that the session may be open.
                run_logger().error(
                    "Could not stop LiveAvatar session %s after %s: %s. It stays open until its "
                    "idle timeout or maximum duration.",
                    session_id,
                    type(exc).__name__,
                    error,
                )
        if scope.cancelled_caught:
            detail = (
                f"stopping session {session_id} took longer than {self._stop_timeout:g} s; it "
                "stays open until its idle timeout or maximum duration"
            )
            if exc is None:
                raise ProviderUnavailableError(
                    provider=PROVIDER, operation="stop session", detail=detail
                )
            run_logger().error("LiveAvatar: %s.", detail)

    # -- while it runs --------------------------------------------------------------------------

    async def keep_alive(self) -> None:
        """Reset the session's idle timeout."""
        self._require_started()
        await self._client.keep_alive(self.session_id, session_token=self.token)

    async def transcript(self, *, start_timestamp: int | None = None) -> Transcript:
        """The session's transcript so far (every page)."""
        return await self._client.get_transcript(self.session_id, start_timestamp=start_timestamp)

    def lite(self, **options: Any) -> LiteSocket:
        """The LITE websocket of this session, for ``async with`` (see :class:`LiteSocket`)."""
        return LiteSocket.for_session(self._require_started(), **options)
