"""The Voiceflow credentials block."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.http import SecretHeaderAuth
from prefect_sessions.http.envelope import Envelope
from prefect_sessions.voiceflow.client import VoiceflowClient
from prefect_sessions.voiceflow.envelope import ENVELOPE

DEFAULT_BASE_URL = "https://general-runtime.voiceflow.com"


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

    def get_client(
        self, *, transport: httpx.AsyncBaseTransport | None = None, **overrides: Any
    ) -> VoiceflowClient:
        """A new client for this project, to use as ``async with credentials.get_client() as c``."""
        auth = SecretHeaderAuth("authorization", self.api_key)
        http = self.http_client(auth, transport=transport, **overrides)
        return VoiceflowClient(http, project_id=self.project_id, environment=self.environment)
