"""The LiveAvatar credentials block."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.http import SecretHeaderAuth
from prefect_sessions.http.envelope import Envelope
from prefect_sessions.liveavatar.client import LiveAvatarClient
from prefect_sessions.liveavatar.envelope import ENVELOPE

DEFAULT_BASE_URL = "https://api.liveavatar.com"


class LiveAvatarCredentials(ProviderCredentials):
    """Credentials and settings for LiveAvatar's Sessions API (HeyGen LiveAvatar).

    The API key mints session tokens and manages sessions; each session's own token (returned by
    ``create_session_token``) starts it.

    Example:
        Load saved credentials and run a sandbox session that is always stopped:
        ```python
        from prefect_sessions.liveavatar import LiveAvatarCredentials, LiteSessionConfig

        credentials = LiveAvatarCredentials.load("BLOCK_NAME")
        async with credentials.get_client() as client:
            config = LiteSessionConfig(avatar_id=avatar_id, is_sandbox=True)
            async with client.session(config) as session:
                transcript = await session.transcript()
        ```
    """

    _block_type_name = "LiveAvatar Credentials"
    _documentation_url = "https://docs.liveavatar.com/api-reference/sessions/create-session-token"  # type: ignore[assignment]
    provider_name: ClassVar[str] = "LiveAvatar"
    envelope: ClassVar[Envelope] = ENVELOPE

    api_key: SecretStr = Field(
        default=...,
        description="LiveAvatar API key, sent in the X-API-KEY header (from the LiveAvatar app).",
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description=(
            "Root URL of the LiveAvatar API. Change it for the local emulator (for example "
            "http://127.0.0.1:8787)."
        ),
    )

    def get_client(
        self, *, transport: httpx.AsyncBaseTransport | None = None, **overrides: Any
    ) -> LiveAvatarClient:
        """A new client, to use as ``async with credentials.get_client() as client``."""
        auth = SecretHeaderAuth("X-API-KEY", self.api_key)
        http = self.http_client(auth, transport=transport, **overrides)
        return LiveAvatarClient(http)
