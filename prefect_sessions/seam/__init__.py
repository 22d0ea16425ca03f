"""The provider seam: what a provider package implements and how it plugs in.

- :mod:`.turns`: the suite's turns and expectations, and the provider-neutral :class:`Reply`;
- :mod:`.adapter`: the adapter protocol the runner drives, its client-backed base class, and how a
  run's credentials are chosen;
- :mod:`.provider`: the registry entry, :class:`Provider`.

It sits below the provider packages and above the engine (:mod:`prefect_sessions.http`): providers
import it, it imports none of them.
"""

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
