"""Which credentials a run uses: a block given to the flow, a saved block, or inline settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefect_sessions.conversation.protocol import ConnectionSettings
from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.errors import ConfigurationError

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
