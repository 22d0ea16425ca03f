"""Vectara-specific refinements of the package's errors."""

from __future__ import annotations

from prefect_sessions.errors import InvalidRequestError, ProviderUnavailableError


class SessionBusyError(InvalidRequestError):
    """Vectara answered 409: the session is already running (the agent is still answering an
    earlier input). The input was *not* taken, so it is safe to send again once the session
    stops (``AgentSession.running`` is false), or to queue it now with ``since``."""


class AgentStreamError(ProviderUnavailableError):
    """The agent reported an ``error`` event in the middle of a streamed answer.

    The message was accepted and stored before the agent failed, so it is not sent again: read the
    session's events, or send a new message. ``server_message`` holds the agent's error messages.
    """
