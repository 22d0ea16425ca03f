"""The Voiceflow credentials block."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.http import HttpClient, SecretHeaderAuth
from prefect_sessions.http.envelope import Envelope
from prefect_sessions.voiceflow.client import VoiceflowClient
from prefect_sessions.voiceflow.envelope import ENVELOPE

DEFAULT_BASE_URL = "https://general-runtime.voiceflow.com"
#: Where past conversations are read: the Analytics API, and the legacy transcripts API.
DEFAULT_ANALYTICS_URL = "https://analytics-api.voiceflow.com"
DEFAULT_LEGACY_API_URL = "https://api.voiceflow.com"


class VoiceflowCredentials(ProviderCredentials):
    """Credentials and settings for Voiceflow's Conversations API (the general runtime).

    The API key authorises session start, state and legacy interact calls; v4 interact calls use the
    session key that session start returns.

    Example:
        Load saved credentials and run one turn:
        ```python
        from prefect_sessions.voiceflow import VoiceflowCredentials, TextAction

        voiceflow_credentials = VoiceflowCredentials.load("BLOCK_NAME")
        async with voiceflow_credentials.get_client() as client:
            session = await client.start_session("user-42")
            turn = await client.interact(session, TextAction(payload="I need a refund"))
        ```
    """

    _block_type_name = "Voiceflow Credentials"
    _documentation_url = "https://docs.voiceflow.com/api-reference"  # type: ignore[assignment]
    provider_name: ClassVar[str] = "Voiceflow"
    envelope: ClassVar[Envelope] = ENVELOPE

    api_key: SecretStr = Field(
        default=...,
        description="Voiceflow Dialog Manager API key of the project (starts with VF.DM.).",
    )
    project_id: str = Field(
        default=...,
        min_length=1,
        description="ID of the Voiceflow project (agent), from the agent's settings.",
    )
    environment: str | None = Field(
        default="main",
        description=(
            "Alias of the environment to talk to, such as main or production. Leave empty to "
            "route each new session by the project's traffic split."
        ),
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description=(
            "Root URL of the Voiceflow runtime. Change it for a private cloud or the local "
            "emulator (for example http://127.0.0.1:8787)."
        ),
    )

    analytics_url: str | None = Field(
        default=None,
        description=(
            "Root URL of the Analytics API, where `prefect-sessions record` reads transcripts. "
            "Empty: Voiceflow's own, or base_url when that is not Voiceflow's (the emulator)."
        ),
    )

    def transcript_urls(self) -> tuple[str, str]:
        """Where transcripts are read: the Analytics API's root and the legacy API's root."""
        if self.analytics_url:
            return self.analytics_url, self.analytics_url
        if self.base_url.rstrip("/") != DEFAULT_BASE_URL:
            return self.base_url, self.base_url  # the emulator, or a private cloud
        return DEFAULT_ANALYTICS_URL, DEFAULT_LEGACY_API_URL

    def transcripts_http(
        self, root: str, *, transport: httpx.AsyncBaseTransport | None = None, **overrides: Any
    ) -> HttpClient:
        """An engine client for a transcripts API (another host, so another pacer: the
        Analytics API's limit is its own)."""
        auth = SecretHeaderAuth("authorization", self.api_key)
        copy = self.model_copy(update={"base_url": root})
        return copy.http_client(auth, transport=transport, **overrides)

    def get_client(
        self, *, transport: httpx.AsyncBaseTransport | None = None, **overrides: Any
    ) -> VoiceflowClient:
        """A new client for this project, to use as ``async with credentials.get_client() as c``."""
        auth = SecretHeaderAuth("authorization", self.api_key)
        http = self.http_client(auth, transport=transport, **overrides)
        return VoiceflowClient(http, project_id=self.project_id, environment=self.environment)
