"""The credentials block of an OpenAI-compatible model endpoint."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, SecretStr

from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.http import CredentialAuth, SecretHeaderAuth
from prefect_sessions.http.envelope import Envelope
from prefect_sessions.llm.client import ModelClient, ModelSettings
from prefect_sessions.llm.envelope import ENVELOPE

DEFAULT_BASE_URL = "https://api.openai.com/v1"

ResponseFormat = Literal["json_schema", "json_object", "none"]


class ModelCredentials(ProviderCredentials):
    """An OpenAI-compatible model endpoint: where it is, its key, the model and how to call it.

    It covers OpenAI (the default URL), Azure OpenAI (``https://<resource>.openai.azure.com/
    openai/v1`` with ``api_key_header: api-key``), vLLM, Ollama (``http://127.0.0.1:11434/v1``, no
    key) and a LiteLLM proxy. Calls are deterministic by default (temperature 0 and a seed),
    paced by the endpoint's published requests and tokens quotas, and retried on 429 and 5xx:
    a judge's call changes nothing, so it is safe to send again.

    Example:
        ```python
        from prefect_sessions.llm import ModelCredentials

        judge = ModelCredentials(model="gpt-4o-mini", api_key="sk-...")
        judge.save("judge-model")  # then in a suite: judge_model: {credentials: judge-model}
        ```
    """

    _block_type_name = "OpenAI-Compatible Model"
    _documentation_url = "https://platform.openai.com/docs/api-reference/chat"  # type: ignore[assignment]
    provider_name: ClassVar[str] = "Model endpoint"
    envelope: ClassVar[Envelope] = ENVELOPE

    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description=(
            "Root URL of the OpenAI-compatible API, up to and including /v1 (Ollama: "
            "http://127.0.0.1:11434/v1; the emulator: http://127.0.0.1:8787/openai/v1)."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None, description="The endpoint's API key (leave empty for a local model)."
    )
    api_key_header: Literal["authorization", "api-key"] = Field(
        default="authorization",
        description="How the key is sent: 'authorization' (Bearer; OpenAI) or 'api-key' (Azure).",
    )
    model: str = Field(default=..., min_length=1, description="The model (or Azure deployment).")
    embedding_model: str | None = Field(
        default=None,
        description="The endpoint's embedding model, for 'similar' expectations that use it.",
    )
    temperature: float = Field(default=0.0, ge=0, le=2, description="0: the same answer again.")
    seed: int | None = Field(
        default=0, description="Sent with each call, for endpoints that sample by it."
    )
    max_tokens: int = Field(
        default=512, ge=16, le=32_768, description="The most a judge's or a user's answer takes."
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Other body parameters sent with each chat completion (e.g. top_p).",
    )
    response_format: ResponseFormat = Field(
        default="json_schema",
        description=(
            "How a verdict is asked for: a JSON schema (OpenAI, vLLM, Ollama), a JSON object, or "
            "plain text. An endpoint that refuses one is asked the next way, and the answer is "
            "always read defensively."
        ),
    )
    timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=600,
        description="Seconds to wait for a model's answer before an attempt counts as failed.",
    )

    def auth(self) -> CredentialAuth | None:
        """The key on the wire, or nothing for an endpoint without one."""
        if self.api_key is None:
            return None
        if self.api_key_header == "api-key":
            return SecretHeaderAuth("api-key", self.api_key)
        return SecretHeaderAuth("authorization", self.api_key, "Bearer")

    def settings(self) -> ModelSettings:
        """What each call is made with."""
        return ModelSettings(
            model=self.model,
            embedding_model=self.embedding_model,
            temperature=self.temperature,
            seed=self.seed,
            max_tokens=self.max_tokens,
            parameters=dict(self.parameters),
            response_format=self.response_format,
        )

    def get_client(
        self, *, transport: httpx.AsyncBaseTransport | None = None, **overrides: Any
    ) -> ModelClient:
        """A new client, to use as ``async with credentials.get_client() as model``."""
        http = self.http_client(self.auth(), transport=transport, **overrides)
        return ModelClient(http, self.settings())


__all__ = ["DEFAULT_BASE_URL", "ModelCredentials"]
