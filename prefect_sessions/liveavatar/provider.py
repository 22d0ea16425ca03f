"""LiveAvatar's entry in the provider registry: a launched session and ``no_reply`` turns (people
speak to the avatar over LiveKit, so there are no typed turns), read through the transcript."""

from __future__ import annotations

from prefect_sessions.seam.provider import COMMON_OUTPUTS, TEXT_EXPECTATIONS, Provider

PROVIDER = Provider(
    name="liveavatar",
    output_kinds=COMMON_OUTPUTS | {"transcript"},
    credentials="prefect_sessions.liveavatar.credentials:LiveAvatarCredentials",
    transcripts="prefect_sessions.liveavatar.transcripts:LiveAvatarTranscripts",
    adapter="prefect_sessions.liveavatar.adapter:LiveAvatarAdapter",
    turn_kinds=frozenset({"launch", "no_reply"}),
    expectation_kinds=TEXT_EXPECTATIONS - {"trace_type"},
    optional_connection=("avatar_id", "context_id", "voice_agent_id", "is_sandbox"),
    # A launch creates a session token, starts the session and reads the transcript; a
    # keep-alive turn sends one and reads the transcript; every session is stopped at the end.
    start_requests=0,
    turn_requests={"launch": 3, "no_reply": 2},
    variables_requests=0,
    end_requests=1,
    cleanup_requests=0,
)
