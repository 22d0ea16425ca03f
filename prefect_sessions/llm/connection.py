"""A suite's model connection (``judge_model:``, ``embeddings:``): a saved block, or inline
settings whose key comes from an environment variable, as a provider's ``connection:`` does.

Reading a suite must not load Prefect, so the block is only imported when a run resolves it.
Nothing is sent anywhere the suite (or the block) does not name: there is no default endpoint
for inline settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from prefect_sessions.errors import ConfigurationError

if TYPE_CHECKING:
    from prefect_sessions.llm.credentials import ModelCredentials


class ModelConnection(BaseModel):
    """``{credentials: BLOCK}`` or ``{base_url, api_key_env, model}``, with optional call
    settings on top (``temperature``, ``seed``, ``max_tokens``, ``embedding_model``, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    credentials: str | None = Field(
        default=None, min_length=1, description="A saved OpenAI-Compatible Model block's name."
    )
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    api_key_header: Literal["authorization", "api-key"] | None = None
    model: str | None = Field(default=None, min_length=1)
    embedding_model: str | None = Field(default=None, min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = None
    max_tokens: int | None = Field(default=None, ge=16, le=32_768)
    response_format: Literal["json_schema", "json_object", "none"] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> ModelConnection:
        if self.credentials is not None:
            if self.base_url or self.api_key_env:
                raise ValueError(
                    "with 'credentials', the URL and key come from the block: remove base_url "
                    "and api_key_env"
                )
            return self
        if not self.base_url or not self.model:
            raise ValueError(
                "give 'credentials' (a saved model block) or 'base_url' and 'model' (and "
                "'api_key_env' naming the variable that holds the key, unless it needs none)"
            )
        return self

    def environment_problems(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """A key variable that is not set, with its fix."""
        environ = os.environ if environ is None else environ
        if self.api_key_env and not environ.get(self.api_key_env):
            return [f"set the environment variable {self.api_key_env} (the model endpoint's key)"]
        return []

    def overrides(self) -> dict[str, Any]:
        """The call settings given here, over a block's."""
        names = ("model", "embedding_model", "temperature", "seed", "max_tokens")
        given = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        if self.api_key_header is not None:
            given["api_key_header"] = self.api_key_header
        if self.response_format is not None:
            given["response_format"] = self.response_format
        return given

    async def resolve(self) -> ModelCredentials:
        """The credentials block a run uses.

        Raises:
            ConfigurationError: the block cannot be loaded, is of another type, or the key's
                variable is not set.
        """
        from prefect_sessions.llm.credentials import ModelCredentials

        if self.credentials is not None:
            try:
                loaded: ModelCredentials = await ModelCredentials.aload(self.credentials)
            except ValueError as exc:
                raise ConfigurationError(
                    f"judge_model: no model block named {self.credentials!r} ({exc}): save one "
                    "with ModelCredentials(...).save(name), or give base_url and model"
                ) from None
            overrides = self.overrides()
            return loaded.model_copy(update=overrides) if overrides else loaded
        problems = self.environment_problems()
        if problems:
            raise ConfigurationError(f"judge_model: {problems[0]}")
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return ModelCredentials(
            base_url=str(self.base_url),
            api_key=SecretStr(key) if key else None,
            **self.overrides(),
        )


__all__ = ["ModelConnection"]
