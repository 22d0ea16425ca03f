"""Voiceflow's entry in the provider registry: every turn and expectation kind a suite has."""

from __future__ import annotations

from prefect_sessions.seam.provider import ALL_EXPECTATIONS, ALL_TURNS, COMMON_OUTPUTS, Provider

PROVIDER = Provider(
    name="voiceflow",
    output_kinds=COMMON_OUTPUTS | {"variable"},
    credentials="prefect_sessions.voiceflow.credentials:VoiceflowCredentials",
    transcripts="prefect_sessions.voiceflow.transcripts:VoiceflowTranscripts",
    adapter="prefect_sessions.voiceflow.adapter:VoiceflowAdapter",
    turn_kinds=ALL_TURNS,
    expectation_kinds=ALL_EXPECTATIONS,
    required_connection=("project_id",),
    optional_connection=("environment",),
)
