"""Vectara-specific refinements of the package's errors."""

from __future__ import annotations

from prefect_sessions.errors import ProviderUnavailableError


class AgentStreamError(ProviderUnavailableError):
    """The agent reported an ``error`` event in the middle of a streamed answer.

    The message was accepted and stored before the agent failed, so it is not sent again: read the
    session's events, or send a new message. ``server_message`` holds the agent's error messages.
    """
