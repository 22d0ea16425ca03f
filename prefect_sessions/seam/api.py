"""The public surface of :mod:`prefect_sessions.seam`, which hands these names out lazily."""

from prefect_sessions.seam.adapter import (
    AdapterFactory,
    ClientAdapter,
    ConnectionSettings,
    ConversationAdapter,
    ConversationFailure,
    resolve_credentials,
)
from prefect_sessions.seam.provider import Provider
from prefect_sessions.seam.turns import Expectation, Reply, Turn

__all__ = [
    "AdapterFactory",
    "ClientAdapter",
    "ConnectionSettings",
    "ConversationAdapter",
    "ConversationFailure",
    "Expectation",
    "Provider",
    "Reply",
    "Turn",
    "resolve_credentials",
]
