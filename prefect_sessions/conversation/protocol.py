"""The small protocol every provider adapter speaks: start, turn, variables, end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr

from prefect_sessions.conversation.turns import Reply, Turn
from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.errors import PrefectSessionsError


class ConversationFailure(PrefectSessionsError):
    """A scripted step could not be taken as written (e.g. the button to press was not offered).

    The conversation fails with this reason; it is not a provider error.
    """


class ConnectionSettings(BaseModel):
    """How a run reaches the provider: a credentials block (given, or saved under a name), or
    inline settings."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    block: ProviderCredentials | None = None
    credentials_block: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    fields: dict[str, Any] = {}
    rate: float | None = None
    max_share: float | None = None
    cleanup: bool = False


class ConversationAdapter(Protocol):
    """One provider, seen by the runner. Used as an async context manager on one event loop."""

    async def __aenter__(self) -> ConversationAdapter: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def start(self, conversation_id: str, variables: Mapping[str, Any]) -> Any:
        """Open a fresh session for one conversation; return the adapter's handle for it."""
        ...

    async def turn(self, session: Any, turn: Turn) -> Reply:
        """Take one turn; raise :class:`ConversationFailure` if it cannot be taken as written."""
        ...

    async def variables(self, session: Any) -> dict[str, Any]:
        """The session's variables now (for ``variable`` expectations)."""
        ...

    async def end(self, session: Any) -> None:
        """Close the session and clean up what it left on the provider."""
        ...

    def counters(self) -> tuple[int, int]:
        """``(requests sent, answered 429)`` so far."""
        ...


class AdapterFactory(Protocol):
    def __call__(self, settings: ConnectionSettings) -> ConversationAdapter: ...
