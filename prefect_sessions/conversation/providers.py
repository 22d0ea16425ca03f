"""What each provider can do in a conversation, and where its adapter lives.

This table is the only place the conversation layer names providers. The runner asks it for an
adapter by the suite's ``provider`` and never imports a provider itself; adapters are imported
lazily, so validating a suite needs no provider code.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect_sessions.conversation.turns import EXPECTATION_KINDS, TURN_KINDS

if TYPE_CHECKING:
    from prefect_sessions.conversation.protocol import AdapterFactory


@dataclass(frozen=True)
class ProviderSpec:
    """A provider's capabilities in a suite."""

    name: str
    turn_kinds: frozenset[str]
    expectation_kinds: frozenset[str]
    required_connection: tuple[str, ...]
    optional_connection: tuple[str, ...]
    adapter: str  # "module:attribute" of the adapter factory

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

    def adapter_factory(self) -> AdapterFactory:
        module_name, _, attribute = self.adapter.partition(":")
        factory: AdapterFactory = getattr(importlib.import_module(module_name), attribute)
        return factory


_ALL_EXPECTATIONS = frozenset(EXPECTATION_KINDS)
_TEXT_EXPECTATIONS = _ALL_EXPECTATIONS - {"variable", "button"}

PROVIDERS: dict[str, ProviderSpec] = {
    "voiceflow": ProviderSpec(
        name="voiceflow",
        turn_kinds=frozenset(TURN_KINDS),
        expectation_kinds=_ALL_EXPECTATIONS,
        required_connection=("project_id",),
        optional_connection=("environment",),
        adapter="prefect_sessions.conversation.adapters.voiceflow:VoiceflowAdapter",
    ),
    "vectara": ProviderSpec(
        name="vectara",
        turn_kinds=frozenset({"text"}),
        expectation_kinds=_TEXT_EXPECTATIONS,
        required_connection=("agent_key",),
        optional_connection=(),
        adapter="prefect_sessions.conversation.adapters.vectara:VectaraAdapter",
    ),
    "liveavatar": ProviderSpec(
        name="liveavatar",
        turn_kinds=frozenset({"launch", "no_reply"}),
        expectation_kinds=_TEXT_EXPECTATIONS - {"trace_type"},
        required_connection=(),
        optional_connection=("avatar_id", "context_id", "is_sandbox"),
        adapter="prefect_sessions.conversation.adapters.liveavatar:LiveAvatarAdapter",
    ),
}


def provider_spec(name: str) -> ProviderSpec:
    """The spec of a provider by its suite name."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ValueError(
            f"unknown provider {name!r}: use one of {', '.join(sorted(PROVIDERS))}"
        ) from None
