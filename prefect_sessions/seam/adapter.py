"""The small protocol every provider adapter speaks (start, turn, variables, end), and what
every adapter shares: one provider client opened for a chunk of conversations, and the credentials
a run uses (a block given to the flow, a saved block, or inline settings)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, SecretStr

from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.errors import ConfigurationError, PrefectSessionsError
from prefect_sessions.http import HttpClient, Pacers
from prefect_sessions.seam.turns import Reply, Turn


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
    #: The run's pacer registry, shared by every client the run opens (``None``: the process's).
    pacers: Pacers | None = None


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


@runtime_checkable
class ReportsUsage(Protocol):
    """An adapter that can say what a conversation cost at the provider (optional: the runner
    asks only adapters that have ``usage``)."""

    def usage(self, session: Any) -> dict[str, float]:
        """After :meth:`ConversationAdapter.end`: named amounts (``session_minutes``,
        ``credits``), summed over a run's conversations in its report."""
        ...


class AdapterFactory(Protocol):
    def __call__(self, settings: ConnectionSettings) -> ConversationAdapter: ...


class ProviderClient(Protocol):
    """The part of a provider client an adapter relies on."""

    http: HttpClient

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


ClientT = TypeVar("ClientT", bound=ProviderClient)


class ClientAdapter(abc.ABC, Generic[ClientT]):
    """Opens the provider client on ``async with`` and closes it after."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._client: ClientT | None = None

    @abc.abstractmethod
    async def open_client(self) -> ClientT:
        """A new, not yet opened, client for this run's credentials (made with
        :meth:`client_options`)."""

    def client_options(self) -> dict[str, Any]:
        """What a run's client is made with besides its credentials: the run's pacers."""
        return {} if self.settings.pacers is None else {"pacers": self.settings.pacers}

    async def __aenter__(self) -> Any:
        client = await self.open_client()
        await client.__aenter__()
        self._client = client
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.__aexit__(*exc_info)

    @property
    def client(self) -> ClientT:
        if self._client is None:
            raise RuntimeError("use the adapter inside 'async with'")
        return self._client


C = TypeVar("C", bound=ProviderCredentials)


async def resolve_credentials(
    settings: ConnectionSettings, kind: type[C], inline: Callable[[dict[str, Any]], C]
) -> C:
    """The credentials block of type ``kind`` for a run.

    A given or saved block wins, with the run's base URL, rate and share applied on top. Otherwise
    ``inline`` builds one from the suite's connection (its API key and provider fields).
    """
    if settings.block is not None or settings.credentials_block:
        loaded: object = settings.block or await kind.aload(str(settings.credentials_block))
        if not isinstance(loaded, kind):
            name = settings.credentials_block or "the credentials given"
            raise ConfigurationError(
                f"{name} is not a {kind.get_block_type_name()} block: choose one that is"
            )
        updates: dict[str, Any] = {}
        if settings.base_url:
            updates["base_url"] = settings.base_url
        if settings.rate:
            updates["pacing_rate"] = settings.rate
        if settings.max_share:
            updates["max_share"] = min(settings.max_share, loaded.max_share)
        return loaded.model_copy(update=updates) if updates else loaded
    if settings.api_key is None:
        raise ConfigurationError(
            f"{kind.provider_name} needs an API key: set connection.api_key_env in the suite"
        )
    options: dict[str, Any] = {"pacing_rate": settings.rate}
    if settings.max_share:
        options["max_share"] = settings.max_share
    if settings.base_url:
        options["base_url"] = settings.base_url
    return inline(options)
