"""What every adapter shares: one provider client, opened for a chunk of conversations."""

from __future__ import annotations

import abc
from typing import Any, Generic, Protocol, TypeVar

from prefect_sessions.conversation.protocol import ConnectionSettings
from prefect_sessions.http import HttpClient


class ProviderClient(Protocol):
    """The part of a provider client an adapter relies on."""

    http: HttpClient

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


ClientT = TypeVar("ClientT", bound=ProviderClient)


class ClientAdapter(abc.ABC, Generic[ClientT]):
    """Opens the provider client on ``async with`` and closes it after; counts its requests."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._client: ClientT | None = None

    @abc.abstractmethod
    async def open_client(self) -> ClientT:
        """A new, not yet opened, client for this run's credentials."""

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

    def counters(self) -> tuple[int, int]:
        stats = self.client.http.stats
        return stats.attempts, stats.rate_limited
