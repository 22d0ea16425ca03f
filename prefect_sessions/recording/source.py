"""Where ``record`` and ``crawl`` connect: as a suite does (its saved block or its inline
connection, the key read from the environment), and what the suite they write says about it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from prefect_sessions.conversation.suite import Suite
from prefect_sessions.providers import get_provider
from prefect_sessions.seam.adapter import ConnectionSettings
from prefect_sessions.seam.provider import Provider


@dataclass(frozen=True)
class Source:
    """A provider to read from or explore, and how to reach it."""

    provider: Provider
    settings: ConnectionSettings
    #: The written suite's way to connect: ``credentials:`` and/or ``connection:``, as given.
    suite_fields: dict[str, Any] = field(default_factory=dict)


def source_of(
    suite: Suite,
    *,
    max_share: float | None = None,
    rate: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> Source:
    """Connect as ``suite`` does; the suites written connect the same way."""
    environ = os.environ if environ is None else environ
    connection = suite.connection
    key = environ.get(connection.api_key_env) if connection and connection.api_key_env else None
    settings = ConnectionSettings(
        credentials_block=suite.credentials,
        base_url=connection.base_url if connection else None,
        api_key=SecretStr(key) if key else None,
        fields=connection.provider_fields if connection else {},
        rate=rate,
        max_share=max_share or suite.max_share,
    )
    fields: dict[str, Any] = {"provider": suite.provider}
    if suite.credentials:
        fields["credentials"] = suite.credentials
    if connection is not None:
        fields["connection"] = connection.model_dump(exclude_none=True)
    return Source(get_provider(suite.provider), settings, fields)
