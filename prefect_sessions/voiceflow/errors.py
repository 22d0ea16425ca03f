"""Voiceflow-specific refinements of the package's errors."""

from __future__ import annotations

from typing import Any

from prefect_sessions.errors import AuthenticationError, PrefectSessionsError


class SessionKeyRejectedError(AuthenticationError):
    """Voiceflow refused a session key on interact (401).

    The usual reason: a newer session was started for the same user, which ends the old session and
    revokes its key. ``superseded`` says whether this process saw that happen (``True``), or cannot
    tell (``None``). Start a new session, or use the newer session's key.
    """

    def __init__(self, *, superseded: bool | None = None, **kwargs: Any) -> None:
        self.superseded = superseded
        super().__init__(**kwargs)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "superseded": self.superseded}


class ButtonNotFoundError(PrefectSessionsError, LookupError):
    """No button with the requested label was offered in the last turn."""
