"""The Vectara credentials block: an API key or an OAuth 2.0 app client."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr, field_validator

from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.errors import ConfigurationError
from prefect_sessions.http import CredentialAuth, SecretHeaderAuth
from prefect_sessions.http.envelope import Envelope
from prefect_sessions.vectara.auth import DEFAULT_TOKEN_URL, OAuthClientCredentials
from prefect_sessions.vectara.client import VectaraClient
from prefect_sessions.vectara.envelope import ENVELOPE

DEFAULT_BASE_URL = "https://api.vectara.io"


class VectaraCredentials(ProviderCredentials):
    """Credentials and settings for Vectara's Agents API (sessions and events).

    Give either a personal API key (sent as ``x-api-key``) or an OAuth 2.0 app client (client ID
    and secret); with the app client, bearer tokens are fetched from ``token_url``, cached until
    shortly before they expire and fetched again after that.

    Example:
        Load saved credentials and hold a conversation:
        ```python
        from prefect_sessions.vectara import VectaraCredentials

        credentials = VectaraCredentials.load("BLOCK_NAME")
        async with credentials.get_client() as client:
            session = await client.create_session("support", name="Billing question")
            reply = await client.send_message("support", session.key, "Why was I charged twice?")
        ```
    """

    _block_type_name = "Vectara Credentials"
    _documentation_url = "https://docs.vectara.com/docs/rest-api/create-agent-session"  # type: ignore[assignment]
    provider_name: ClassVar[str] = "Vectara"
    envelope: ClassVar[Envelope] = ENVELOPE

    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description=(
            "Root URL of the Vectara API. Change it for a private deployment or the local "
            "emulator (for example http://127.0.0.1:8787)."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Personal API key, sent as x-api-key. Leave empty to use an OAuth app client.",
    )
    client_id: str | None = Field(
        default=None,
        description="OAuth 2.0 app client ID, used with client_secret instead of an API key.",
    )
    client_secret: SecretStr | None = Field(
        default=None, description="OAuth 2.0 app client secret, used with client_id."
    )
    token_url: str = Field(
        default=DEFAULT_TOKEN_URL,
        description="Where OAuth 2.0 tokens are fetched from with the app client's credentials.",
    )
    request_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Seconds Vectara may spend on a request before it gives up, sent as the "
            "Request-Timeout header. Leave empty for Vectara's default."
        ),
    )

    @field_validator("token_url")
    @classmethod
    def _token_url_is_http(cls, value: str) -> str:
        if not value.strip().startswith(("http://", "https://")):
            raise ValueError(
                f"token_url must start with http:// or https://, for example {DEFAULT_TOKEN_URL}"
            )
        return value.strip()

    def auth(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> CredentialAuth:
        """The credential to send: ``x-api-key``, or a bearer token from the app client.

        Raises:
            ConfigurationError: neither or both ways to sign in are filled in.
        """
        name = type(self).__name__
        has_client = self.client_id is not None or self.client_secret is not None
        if self.api_key is not None and has_client:
            raise ConfigurationError(
                f"{name}: give either api_key or client_id and client_secret, not both; "
                "clear the one you do not use"
            )
        if self.api_key is not None:
            if not self.api_key.get_secret_value().strip():
                raise ConfigurationError(f"{name}: api_key is empty: paste your Vectara API key")
            return SecretHeaderAuth("x-api-key", self.api_key)
        if not self.client_id or self.client_secret is None:
            missing = "client_secret" if self.client_id else "client_id"
            what = "an API key" if not has_client else f"{missing} (the app client needs both)"
            raise ConfigurationError(
                f"{name}: no way to sign in to Vectara: set api_key, or client_id and "
                f"client_secret of an OAuth app client; missing {what}"
            )
        return OAuthClientCredentials(
            token_url=self.token_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            provider=self.provider_name,
            timeout=self.http_timeout(),
            transport=transport,
            clock=clock,
        )

    def get_client(
        self, *, transport: httpx.AsyncBaseTransport | None = None, **overrides: Any
    ) -> VectaraClient:
        """A new client, to use as ``async with credentials.get_client() as client``.

        Args:
            transport: an httpx transport, e.g. ``httpx.ASGITransport(app=emulator)``; OAuth token
                requests use it too.
            overrides: other :class:`~prefect_sessions.http.HttpClient` arguments; ``auth``
                replaces the block's credential (tests pass one on a fake clock).
        """
        auth = overrides.pop("auth", None) or self.auth(transport=transport)
        headers = dict(overrides.pop("headers", None) or {})
        if self.request_timeout_seconds is not None:
            headers["Request-Timeout"] = str(self.request_timeout_seconds)
        http = self.http_client(auth, transport=transport, headers=headers, **overrides)
        return VectaraClient(http)
