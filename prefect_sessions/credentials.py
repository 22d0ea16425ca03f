"""What every provider's credentials block shares: where the API is and how hard to try.

Each provider subclasses :class:`ProviderCredentials` with its own secret fields and default base
URL, and builds its client on :meth:`ProviderCredentials.http_client`, so pacing, retries and
timeouts are configured the same way for all three.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import httpx
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, field_validator

from prefect_sessions.errors import ConfigurationError
from prefect_sessions.http import BreakerPolicy, CredentialAuth, HttpClient, RetryPolicy
from prefect_sessions.http.envelope import GENERIC, Envelope


class ProviderCredentials(CredentialsBlock, abc.ABC):
    """Connection settings shared by the providers' credentials blocks (not a block type itself)."""

    provider_name: ClassVar[str]
    #: How the provider's answers read; the engine takes it (:mod:`prefect_sessions.http.envelope`).
    envelope: ClassVar[Envelope] = GENERIC

    base_url: str = Field(
        default=...,
        description=(
            "Root URL of the provider's API. Change it for a private cloud or for the local "
            "emulator (for example http://127.0.0.1:8787)."
        ),
    )
    pacing_rate: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Requests per second to stay under with this key, if you know the provider's limit. "
            "Leave empty to learn it from the provider's rate-limit headers, or from its 429s "
            "when it publishes none."
        ),
    )
    max_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description=(
            "Share of the key's limit this block's clients may use, e.g. 0.5 on a production "
            "key to leave half to live users. Applies to a published, configured or learned limit."
        ),
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Seconds to wait for a response before an attempt counts as failed.",
    )
    max_attempts: int = Field(
        default=6,
        ge=1,
        le=50,
        description="Attempts per request, the first one included, for failures safe to retry.",
    )
    max_retry_wait_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description=(
            "Total seconds one request may spend waiting between attempts. A provider that asks "
            "for a longer pause makes the request fail with RateLimitedError instead."
        ),
    )

    give_up_after_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description=(
            "Seconds the provider may go without answering at all (connections refused, names "
            "not resolved, timeouts) before a run stops. Conversations with a verdict are kept; "
            "resuming with the same run key runs the rest."
        ),
    )

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            example = cls.model_fields["base_url"].default
            shown = example if isinstance(example, str) else "https://api.example.com"
            raise ValueError(f"base_url must start with http:// or https://, for example {shown}")
        return url

    def retry_policy(self) -> RetryPolicy:
        """The engine's retry policy from this block's settings."""
        return RetryPolicy(
            max_attempts=self.max_attempts, max_wait_seconds=self.max_retry_wait_seconds
        )

    def breaker_policy(self) -> BreakerPolicy:
        """When the engine's circuit breaker stops waiting for a provider that went away."""
        give_up = self.give_up_after_seconds
        return BreakerPolicy(open_after=min(10.0, give_up / 3), give_up_after=give_up)

    def http_timeout(self) -> httpx.Timeout:
        """Explicit connect/read/write/pool timeouts; reads get the configured seconds."""
        connect = min(10.0, self.timeout_seconds)
        return httpx.Timeout(
            connect=connect, read=self.timeout_seconds, write=self.timeout_seconds, pool=connect
        )

    def http_client(
        self,
        auth: CredentialAuth | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **overrides: Any,
    ) -> HttpClient:
        """A new engine client for this provider with this block's settings.

        Args:
            auth: the credential sent on every request.
            transport: an httpx transport, e.g. ``httpx.ASGITransport(app=emulator)`` to talk to
                the emulator in process.
            overrides: other :class:`HttpClient` arguments (tests inject ``sleep``).
        """
        try:
            return HttpClient(
                provider=self.provider_name,
                base_url=self.base_url,
                auth=auth,
                rate=self.pacing_rate,
                max_share=self.max_share,
                retry=self.retry_policy(),
                timeout=self.http_timeout(),
                breaker=self.breaker_policy(),
                envelope=self.envelope,
                transport=transport,
                **overrides,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"{type(self).__name__}: {exc}") from exc
