"""A client of an OpenAI-compatible endpoint: chat completions and embeddings, on the engine.

Every call goes through :class:`~prefect_sessions.http.HttpClient`, so it is paced by the
endpoint's published quotas (requests and tokens: each call states its estimated token cost),
retried on 429 and 5xx (a judge's call changes nothing, so it is idempotent), and counted.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from prefect_sessions.errors import ConfigurationError, InvalidRequestError, NotFoundError
from prefect_sessions.http import HttpClient
from prefect_sessions.llm.tokens import TokenEstimate

#: Calibrated token estimates, one per (endpoint, model): every client of a process shares it.
_ESTIMATES: dict[tuple[str, str], TokenEstimate] = {}
#: Response formats an endpoint refused, per (endpoint, model): not asked for again.
_REFUSED_FORMATS: dict[tuple[str, str], set[str]] = {}
_LOCK = threading.Lock()

#: The ways of asking for JSON, from the strictest; each refused one falls to the next.
FORMATS = ("json_schema", "json_object", "none")


@dataclass(frozen=True)
class ModelSettings:
    """What each call is made with (from :class:`~prefect_sessions.llm.ModelCredentials`)."""

    model: str
    embedding_model: str | None = None
    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int = 512
    parameters: Mapping[str, Any] = field(default_factory=dict)
    response_format: str = "json_schema"


@dataclass(frozen=True)
class ChatAnswer:
    """A chat completion's text and what the endpoint says it cost."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _shared(registry: dict[tuple[str, str], Any], key: tuple[str, str], make: Any) -> Any:
    with _LOCK:
        if key not in registry:
            registry[key] = make()
        return registry[key]


def _format_body(kind: str, schema: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    if kind == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": dict(schema), "strict": True},
        }
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def _refuses_format(error: InvalidRequestError) -> bool:
    said = " ".join([str(error.server_message or ""), *error.field_errors]).lower()
    return "response_format" in said or "json_schema" in said or "json_object" in said


class ModelClient:
    """Chat completions and embeddings at one endpoint, as an async context manager.

    Example:
        ```python
        async with ModelCredentials.load("judge-model").get_client() as model:
            answer = await model.chat([{"role": "user", "content": "Say hello."}])
        ```
    """

    def __init__(self, http: HttpClient, settings: ModelSettings) -> None:
        self.http = http
        self.settings = settings
        self._endpoint = str(http.base_url)

    def __repr__(self) -> str:
        return f"ModelClient(base_url='{self._endpoint}', model={self.settings.model!r})"

    async def __aenter__(self) -> ModelClient:
        await self.http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.__aexit__(*exc_info)

    def estimate(self, model: str) -> TokenEstimate:
        """The calibrated token estimate of ``model`` at this endpoint."""
        return _shared(_ESTIMATES, (self._endpoint, model), TokenEstimate)  # type: ignore[no-any-return]

    def _formats(self, model: str) -> list[str]:
        refused = _shared(_REFUSED_FORMATS, (self._endpoint, model), set)
        start = FORMATS.index(self.settings.response_format)
        return [kind for kind in FORMATS[start:] if kind not in refused] or ["none"]

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        schema: Mapping[str, Any] | None = None,
        schema_name: str = "answer",
        model: str | None = None,
        max_tokens: int | None = None,
    ) -> ChatAnswer:
        """One chat completion. With ``schema``, the answer is asked for as JSON of that schema
        (``response_format``), falling back to a JSON object, then to plain text, when the
        endpoint refuses a way of asking; the caller reads the answer defensively either way.

        Raises:
            ProviderError: the endpoint failed (after the engine's retries), or its answer could
                not be read.
        """
        name = model or self.settings.model
        limit = max_tokens or self.settings.max_tokens
        texts = [str(message.get("content", "")) for message in messages]
        estimate = self.estimate(name)
        raw = estimate.raw(texts)
        body: dict[str, Any] = {
            **self.settings.parameters,
            "model": name,
            "messages": [dict(message) for message in messages],
            "temperature": self.settings.temperature,
            "max_tokens": limit,
        }
        if self.settings.seed is not None:
            body["seed"] = self.settings.seed
        formats = self._formats(name) if schema is not None else ["none"]
        for kind in formats:
            response_format = _format_body(kind, schema or {}, schema_name)
            if response_format is None:
                body.pop("response_format", None)
            else:
                body["response_format"] = response_format
            try:
                response = await self.http.request(
                    "POST",
                    "chat/completions",
                    operation="chat completion",
                    idempotent=True,
                    json=body,
                    tokens=estimate.prompt(texts) + limit,
                )
            except InvalidRequestError as error:
                if kind == "none" or not _refuses_format(error):
                    raise
                _shared(_REFUSED_FORMATS, (self._endpoint, name), set).add(kind)
                continue
            return self._answer(response, name, estimate, raw)
        raise AssertionError("unreachable: the last format is plain text")

    def _answer(self, response: Any, model: str, estimate: TokenEstimate, raw: float) -> ChatAnswer:
        data = self.http.read_json(response, "chat completion", expect=dict)
        try:
            message = data["choices"][0]["message"]
            text = message.get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not text")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            why = f"no choices[0].message.content ({type(exc).__name__})"
            raise self.http.unreadable(response, "chat completion", why) from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt = _count(usage.get("prompt_tokens"))
        estimate.learn(raw, prompt)
        return ChatAnswer(
            text=text,
            model=str(data.get("model") or model),
            prompt_tokens=prompt,
            completion_tokens=_count(usage.get("completion_tokens")),
        )

    async def embeddings(
        self, texts: Sequence[str], *, model: str | None = None
    ) -> tuple[list[list[float]], int]:
        """The embedding of each text, in order, and the tokens the endpoint counted.

        Raises:
            ConfigurationError: no embedding model is configured.
            ProviderError: the endpoint failed, or its answer could not be read.
        """
        name = model or self.settings.embedding_model
        if not name:
            raise ConfigurationError(
                "similar: the model endpoint has no embedding_model: set one, or leave "
                "'embeddings' out of the suite to compare offline"
            )
        estimate = self.estimate(name)
        response = await self.http.request(
            "POST",
            "embeddings",
            operation="embeddings",
            idempotent=True,
            json={"model": name, "input": list(texts), "encoding_format": "float"},
            tokens=estimate.prompt(texts),
        )
        data = self.http.read_json(response, "embeddings", expect=dict)
        try:
            rows = sorted(data["data"], key=lambda row: int(row["index"]))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError) as exc:
            why = f"no data[].embedding ({type(exc).__name__})"
            raise self.http.unreadable(response, "embeddings", why) from None
        if len(vectors) != len(texts):
            why = f"{len(vectors)} embeddings for {len(texts)} texts"
            raise self.http.unreadable(response, "embeddings", why)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return vectors, _count(usage.get("total_tokens") or usage.get("prompt_tokens"))

    async def check_model(self, model: str | None = None) -> None:
        """Ask the endpoint whether it serves ``model`` (the configured one by default), before
        a run sends anything else: ``GET /models/{model}``, or its list of models where it
        cannot retrieve one.

        Raises:
            ConfigurationError: the endpoint answers 404 for the model, or does not list it.
            ProviderError: the endpoint failed otherwise (a refused key, an outage).
        """
        name = model or self.settings.model
        where = self._endpoint
        try:
            await self.http.request(
                "GET",
                f"models/{quote(name, safe='')}",
                operation="retrieve model",
                idempotent=True,
            )
            return
        except NotFoundError as error:
            said = error.server_message
        try:
            listed = await self.http.request_json(
                "GET", "models", operation="list models", idempotent=True, expect=dict
            )
            ids = [str(item.get("id")) for item in listed.get("data", []) if isinstance(item, dict)]
        except (NotFoundError, InvalidRequestError):
            ids = []
        if name in ids:
            return
        known = f"; it serves {', '.join(ids[:8])}" if ids else ""
        detail = f" ({said})" if said else ""
        raise ConfigurationError(
            f"model {name!r}: {where} answers 404 for it{detail}{known}: check the model's name "
            "in judge_model"
        )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


__all__ = ["FORMATS", "ChatAnswer", "ModelClient", "ModelSettings"]
