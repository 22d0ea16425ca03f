"""A provider's entry in the registry: everything the rest of the package needs to know about it.

A provider package (``prefect_sessions.voiceflow`` and the others, or one of your own) builds one
:class:`Provider` in its ``provider.py``; :mod:`prefect_sessions.providers` lists them. Suites,
the UI form's block picker, block registration and maintenance ask the registry, never a provider
package, so a new provider is one package and one registry entry.

An entry may name its credentials block and its adapter as ``"module:attribute"``: they are then
imported on first use, so validating a suite against the entry loads neither Prefect nor the
provider's client.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from prefect_sessions.seam.turns import EXPECTATION_KINDS, TURN_KINDS, Turn

if TYPE_CHECKING:
    from prefect_sessions.credentials import ProviderCredentials
    from prefect_sessions.seam.adapter import AdapterFactory
    from prefect_sessions.seam.transcripts import TranscriptReaderFactory

T = TypeVar("T")

#: Output kinds every provider gives (``reply``, ``regex``, ``usage``, ``status``, ``reason``).
COMMON_OUTPUTS = frozenset({"reply", "regex", "usage", "status", "reason", "stopped"})
#: Every turn and expectation kind a suite can hold; a provider takes a subset.
ALL_TURNS = frozenset(TURN_KINDS)
ALL_EXPECTATIONS = frozenset(EXPECTATION_KINDS)
#: The expectations that read only the answer's text and timing (no buttons, no variables).
TEXT_EXPECTATIONS = ALL_EXPECTATIONS - {"variable", "button"}


def imported(name: str) -> Any:
    """The object ``"module:attribute"`` names, its module imported now."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Imported(Generic[T]):
    """A field that holds an object, or ``"module:attribute"`` naming it, imported on first read.

    A data descriptor: the frozen dataclass's ``__init__`` stores through :meth:`__set__`.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._attribute = f"_{name}"

    @overload
    def __get__(self, holder: None, owner: type) -> Imported[T]: ...

    @overload
    def __get__(self, holder: object, owner: type) -> T: ...

    def __get__(self, holder: object | None, owner: type) -> T | Imported[T]:
        if holder is None:
            raise AttributeError("no default")  # dataclasses ask the class for a default
        value = getattr(holder, self._attribute)
        if isinstance(value, str):
            value = imported(value)
            object.__setattr__(holder, self._attribute, value)
        return cast(T, value)

    def __set__(self, holder: object, value: T | str) -> None:
        object.__setattr__(holder, self._attribute, value)


@dataclass(frozen=True)
class Provider:
    """One provider: its name in suites, its credentials block, what a suite may ask of it, and
    how to run a conversation on it."""

    #: The suite's ``provider:`` value (lower case, e.g. ``voiceflow``).
    name: str
    #: The Prefect block type holding its credentials (or ``"module:Class"``).
    credentials: Imported[type[ProviderCredentials]] = Imported()
    #: Builds the adapter that runs suite conversations (:mod:`prefect_sessions.seam.adapter`),
    #: or ``"module:Class"`` naming it.
    adapter: Imported[AdapterFactory] = Imported()
    turn_kinds: frozenset[str] = ALL_TURNS
    expectation_kinds: frozenset[str] = TEXT_EXPECTATIONS
    #: The kinds of named output a suite may take from its conversations
    #: (:mod:`prefect_sessions.conversation.outputs`): reply, regex, usage, status and reason
    #: everywhere, plus what the provider has (variables, structured output, a transcript).
    output_kinds: frozenset[str] = COMMON_OUTPUTS
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
    #: ``"module:attribute"`` naming the reader of its past conversations
    #: (:mod:`prefect_sessions.seam.transcripts`), for ``prefect-sessions record``.
    transcripts: str | None = None

    def transcript_reader(self) -> TranscriptReaderFactory | None:
        """The reader of its past conversations, imported on first use; ``None`` if it has none."""
        if self.transcripts is None:
            return None
        return cast("TranscriptReaderFactory", imported(self.transcripts))

    def requests_for(
        self, turns: Sequence[Turn], *, cleanup: bool, reads_variables: bool = False
    ) -> int:
        """Requests one run of a conversation with ``turns`` costs when nothing is retried
        (``reads_variables``: its named outputs read the variables at its end)."""
        total = self.start_requests + self.end_requests + (self.cleanup_requests if cleanup else 0)
        total += self.variables_requests if reads_variables else 0
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
