"""Vectara Agents' entry in the provider registry: text turns, answers read as text."""

from __future__ import annotations

from prefect_sessions.seam.provider import TEXT_EXPECTATIONS, Provider
from prefect_sessions.vectara.adapter import VectaraAdapter
from prefect_sessions.vectara.credentials import VectaraCredentials

PROVIDER = Provider(
    name="vectara",
    credentials=VectaraCredentials,
    adapter=VectaraAdapter,
    turn_kinds=frozenset({"text"}),
    expectation_kinds=TEXT_EXPECTATIONS,
    required_connection=("agent_key",),
)
