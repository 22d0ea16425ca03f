"""Vectara Agents' entry in the provider registry: text turns, answers read as text."""

from __future__ import annotations

from prefect_sessions.seam.provider import COMMON_OUTPUTS, TEXT_EXPECTATIONS, Provider

PROVIDER = Provider(
    name="vectara",
    output_kinds=COMMON_OUTPUTS | {"structured"},
    credentials="prefect_sessions.vectara.credentials:VectaraCredentials",
    transcripts="prefect_sessions.vectara.transcripts:VectaraTranscripts",
    adapter="prefect_sessions.vectara.adapter:VectaraAdapter",
    turn_kinds=frozenset({"text"}),
    expectation_kinds=TEXT_EXPECTATIONS,
    required_connection=("agent_key",),
)
