"""A provider's entry in the registry: everything the rest of the package needs to know about it.

A provider package (``prefect_sessions.voiceflow`` and the others, or one of your own) builds one
:class:`Provider` in its ``provider.py``; :mod:`prefect_sessions.providers` lists them. Suites,
the UI form's block picker, block registration and maintenance ask the registry, never a provider
package, so a new provider is one package and one registry entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.seam.adapter import AdapterFactory
from prefect_sessions.seam.turns import EXPECTATION_KINDS, TURN_KINDS, Turn

#: Every turn and expectation kind a suite can hold; a provider takes a subset.
ALL_TURNS = frozenset(TURN_KINDS)
ALL_EXPECTATIONS = frozenset(EXPECTATION_KINDS)
#: The expectations that read only the answer's text and timing (no buttons, no variables).
TEXT_EXPECTATIONS = ALL_EXPECTATIONS - {"variable", "button"}


@dataclass(frozen=True)
class Provider:
    """One provider: its name in suites, its credentials block, what a suite may ask of it, and
    how to run a conversation on it."""

    #: The suite's ``provider:`` value (lower case, e.g. ``voiceflow``).
    name: str
    #: The Prefect block type holding its credentials.
    credentials: type[ProviderCredentials]
    #: Builds the adapter that runs suite conversations (:mod:`prefect_sessions.seam.adapter`).
    adapter: AdapterFactory
    turn_kinds: frozenset[str] = ALL_TURNS
    expectation_kinds: frozenset[str] = TEXT_EXPECTATIONS
    #: Fields a suite's ``connection`` must give for this provider, and the ones it may give.
    required_connection: tuple[str, ...] = ()
    optional_connection: tuple[str, ...] = ()
    #: Requests a conversation costs, for forecasts (``prefect-sessions validate --estimate``):
    #: to start one, per turn kind (1 when not listed), to read its variables for a check, at
    #: its end always, and at its end with the suite's ``cleanup: true``.
    start_requests: int = 1
    turn_requests: Mapping[str, int] = field(default_factory=dict)
    variables_requests: int = 1
    end_requests: int = 0
    cleanup_requests: int = 1

    def requests_for(self, turns: Sequence[Turn], *, cleanup: bool) -> int:
        """Requests one run of a conversation with ``turns`` costs when nothing is retried."""
        total = self.start_requests + self.end_requests + (self.cleanup_requests if cleanup else 0)
        for turn in turns:
            total += self.turn_requests.get(turn.kind, 1)
            total += self.variables_requests if turn.needs_variables else 0
        return total

    def connection_problems(self, fields: Mapping[str, Any]) -> list[str]:
        """Missing or unknown provider-specific connection fields, each with its fix."""
        problems = [
            f"{self.name} needs '{name}' (add '{name}: ...' under connection)"
            for name in self.required_connection
            if not fields.get(name)
        ]
        known = set(self.required_connection) | set(self.optional_connection)
        problems.extend(
            f"unknown field '{name}' for {self.name}; known: "
            f"base_url, api_key_env, {', '.join(sorted(known))}"
            for name in fields
            if name not in known
        )
        return problems
