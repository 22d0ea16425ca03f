"""An OpenAI-compatible model endpoint, under ``/openai/v1/`` (LiveAvatar owns ``/v1/``).

What a judge and a simulated user need, as OpenAI's API reference and its OpenAPI document
(``openai/openai-openapi``) describe it:

- ``POST /openai/v1/chat/completions``: JSON, or streamed as server-sent events
  (``chat.completion.chunk`` objects, then ``data: [DONE]``; with
  ``stream_options.include_usage`` a last chunk carries the usage); ``response_format`` of
  ``text``, ``json_object`` or ``json_schema``; ``max_tokens`` (or ``max_completion_tokens``)
  cuts the answer with ``finish_reason: length``;
- ``POST /openai/v1/embeddings``: a string or a list of them, ``float`` or ``base64``
  (little-endian float32), ``dimensions`` to shorten;
- ``GET /openai/v1/models`` and ``GET /openai/v1/models/{model}``.

Every error is OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}``: 401
``invalid_api_key`` without a Bearer key, 404 ``model_not_found`` for a model it does not serve,
400 ``invalid_request_error`` naming the ``param`` for a body it would refuse. Requests and tokens
are limited as OpenAI limits them (:mod:`prefect_sessions.emulator.model_limits`, the emulator's
``--model-limit``), with the ``x-ratelimit-*`` headers on every answer. The answers come from
:mod:`prefect_sessions.emulator.scripted_model`.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from prefect_sessions.emulator import scripted_model
from prefect_sessions.emulator.api import EmulatedAPI, bearer_or_api_key
from prefect_sessions.emulator.context import emulator_state
from prefect_sessions.emulator.model_limits import ModelLimiter, prompt_tokens

PREFIX = "/openai/v1"
#: The models it serves: chat models answer from the scripted model; the embedding models embed.
CHAT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "emulator-judge")
EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "emulator-embed")
CREATED = 1_700_000_000
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    429: "requests",
}


def openai_error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
    kind: str | None = None,
) -> JSONResponse:
    """OpenAI's error envelope."""
    body = {
        "error": {
            "message": message,
            "type": kind or _TYPES.get(status, "server_error" if status >= 500 else "error"),
            "param": param,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


class OpenAIHTTPError(Exception):
    """An error answer, in OpenAI's envelope (``kind`` is its ``type``; a 429's says which
    budget refused: ``requests`` or ``tokens``)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind, self.headers = kind, headers


class ModelStore:
    """The model's limiter: its buckets live as long as the emulator's state."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.limiter = ModelLimiter(clock)


def _bad(message: str, param: str | None = None, code: str | None = None) -> OpenAIHTTPError:
    return OpenAIHTTPError(400, message, param=param, code=code)


def _key(request: Request) -> str:
    """The caller's key; 401 as OpenAI answers a missing or refused one."""
    header = request.headers.get("authorization", "")
    key = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
    if not key:
        raise OpenAIHTTPError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if not emulator_state(request).key_accepted(key):
        raise OpenAIHTTPError(
            401,
            "Incorrect API key provided: ****. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    return key


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        raise _bad(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)"
        ) from None
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    return body


def _model(body: dict[str, Any], served: tuple[str, ...]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter", param="model")
    if model not in served:
        raise OpenAIHTTPError(
            404,
            f"The model `{model[:200]}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return model


def _number(
    body: dict[str, Any], name: str, low: float, high: float, *, integer: bool = False
) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise _bad(f"Invalid '{name}': expected {kind} from {low:g} to {high:g}.", param=name)
    return float(value)


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _bad(f"Invalid '{where}': only text parts are supported.", param=where)
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(f"Invalid '{where}.text': expected a string.", param=where)
            texts.append(text)
        return "\n".join(texts)
    raise _bad(f"Invalid '{where}': expected a string or a list of text parts.", param=where)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array" if isinstance(messages, list) else None,
        )
    read = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(f"Invalid '{where}': expected an object.", param=where)
        role = message.get("role")
        if role not in ROLES:
            raise _bad(
                f"Invalid value for '{where}.role': expected one of {', '.join(sorted(ROLES))}.",
                param=f"{where}.role",
            )
        content = message.get("content")
        if content is None and role == "assistant":
            content = ""
        read.append({"role": role, "content": _content_text(content, f"{where}.content")})
    return read


def _response_format(body: dict[str, Any]) -> str | None:
    given = body.get("response_format")
    if given is None:
        return None
    kind = given.get("type") if isinstance(given, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise _bad(
            "Invalid 'response_format.type': expected one of text, json_object, json_schema.",
            param="response_format.type",
        )
    if kind == "json_schema":
        schema = given.get("json_schema")
        name = schema.get("name") if isinstance(schema, dict) else None
        if not isinstance(name, str) or not name or len(name) > 64:
            raise _bad(
                "Missing required parameter: 'response_format.json_schema.name'.",
                param="response_format.json_schema.name",
                code="missing_required_parameter",
            )
        if not isinstance(schema.get("schema", {}), dict):
            raise _bad(
                "Invalid 'response_format.json_schema.schema': expected an object.",
                param="response_format.json_schema.schema",
            )
    if kind == "json_object":
        said = " ".join(m["content"] for m in _messages(body)).lower()
        if "json" not in said:  # OpenAI's own rule for json_object
            raise _bad(
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                param="messages",
            )
    return None if kind == "text" else str(kind)


def _limited(
    request: Request, key: str, model: str, tokens: int
) -> tuple[dict[str, str], OpenAIHTTPError | None]:
    """The ``x-ratelimit-*`` headers, and the 429 when a bucket refuses."""
    state = emulator_state(request)
    limit = state.config.model_limit
    if limit is None:
        return {}, None
    store: ModelStore = state.stores["openai"]
    decision = store.limiter.take(key, limit, tokens, model)
    if decision.allowed:
        return decision.headers, None
    error = OpenAIHTTPError(
        429,
        decision.message,
        code="rate_limit_exceeded",
        kind=decision.refused_by,
        headers=decision.headers,
    )
    return decision.headers, error


def _completion_tokens(text: str) -> int:
    return max(1, math.ceil(len(text.split()) * 4 / 3)) if text else 0


def _cut(text: str, limit: int) -> tuple[str, str]:
    """``text`` within ``limit`` tokens (about three words for four tokens), and why it ended."""
    if _completion_tokens(text) <= limit:
        return text, "stop"
    words = text.split(" ")
    kept = max(0, (limit * 3) // 4)
    return " ".join(words[:kept]), "length"


async def chat_completions(request: Request) -> Response:
    key = _key(request)
    body = await _body(request)
    model = _model(body, CHAT_MODELS)
    messages = _messages(body)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "seed", -(2**63), 2**63 - 1, integer=True)
    choices = int(_number(body, "n", 1, 128, integer=True) or 1)
    most = _number(body, "max_completion_tokens", 1, 128_000, integer=True)
    most = most or _number(body, "max_tokens", 1, 128_000, integer=True) or 4096
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("Invalid 'stream': expected a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not stream):
        raise _bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    response_format = _response_format(body)
    prompt = prompt_tokens([m["content"] for m in messages])
    headers, refused = _limited(request, key, model, prompt + int(most) * choices)
    if refused is not None:
        raise refused
    text, finish = _cut(scripted_model.answer(messages, response_format), int(most))
    completion = _completion_tokens(text)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion * choices,
        "total_tokens": prompt + completion * choices,
    }
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if stream:
        include_usage = bool(options and options.get("include_usage"))
        events = _chunks(ident, created, model, text, finish, choices, usage, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    return JSONResponse(
        {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_emulator",
            "service_tier": "default",
            "choices": [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for index in range(choices)
            ],
            "usage": usage,
        },
        headers=headers,
    )


async def _chunks(
    ident: str,
    created: int,
    model: str,
    text: str,
    finish: str,
    choices: int,
    usage: dict[str, int],
    include_usage: bool,
) -> AsyncIterator[str]:
    def chunk(choice_list: list[dict[str, Any]], **extra: Any) -> str:
        payload = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_emulator",
            "choices": choice_list,
            **extra,
        }
        return f"data: {json.dumps(payload)}\n\n"

    words = text.split(" ") if text else []
    for index in range(choices):
        yield chunk(
            [
                {
                    "index": index,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )
        for position, word in enumerate(words):
            piece = word if position == 0 else f" {word}"
            yield chunk(
                [
                    {
                        "index": index,
                        "delta": {"content": piece},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
        yield chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}])
    if include_usage:
        yield chunk([], usage=usage)
    yield "data: [DONE]\n\n"


def _inputs(body: dict[str, Any]) -> list[str]:
    given = body.get("input")
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, list) or not given or len(given) > 2048:
        raise _bad(
            "Invalid 'input': expected a string or an array of 1 to 2048 strings.", param="input"
        )
    texts = []
    for item in given:
        if isinstance(item, str) and item:
            texts.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            texts.append(str(item))  # a token id: read as a word
        else:
            raise _bad("Invalid 'input': each item must be a non-empty string.", param="input")
    return texts


async def embeddings(request: Request) -> Response:
    key = _key(request)
    body = await _body(request)
    model = _model(body, EMBEDDING_MODELS)
    texts = _inputs(body)
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _bad(
            "Invalid 'encoding_format': expected one of float, base64.", param="encoding_format"
        )
    size = int(
        _number(body, "dimensions", 1, scripted_model.DIMENSIONS, integer=True)
        or scripted_model.DIMENSIONS
    )
    tokens = prompt_tokens(texts)
    headers, refused = _limited(request, key, model, tokens)
    if refused is not None:
        raise refused
    rows = []
    for index, text in enumerate(texts):
        vector = scripted_model.embed(text)[:size]
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        vector = [x / norm for x in vector]
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        rows.append({"object": "embedding", "index": index, "embedding": value})
    return JSONResponse(
        {
            "object": "list",
            "data": rows,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        headers=headers,
    )


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": CREATED, "owned_by": "prefect-sessions"}


async def list_models(request: Request) -> Response:
    _key(request)
    return JSONResponse(
        {"object": "list", "data": [_model_object(m) for m in (*CHAT_MODELS, *EMBEDDING_MODELS)]}
    )


async def retrieve_model(request: Request, model: str) -> Response:
    _key(request)
    if model not in (*CHAT_MODELS, *EMBEDDING_MODELS):
        raise OpenAIHTTPError(
            404,
            f"The model '{model[:200]}' does not exist",
            param="model",
            code="model_not_found",
        )
    return JSONResponse(_model_object(model))


def build_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route(f"{PREFIX}/chat/completions", chat_completions, methods=["POST"])
    router.add_api_route(f"{PREFIX}/embeddings", embeddings, methods=["POST"])
    router.add_api_route(f"{PREFIX}/models", list_models, methods=["GET"])
    router.add_api_route(f"{PREFIX}/models/{{model:path}}", retrieve_model, methods=["GET"])
    return router


def _error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenAIHTTPError)
    return openai_error(
        exc.status,
        exc.message,
        exc.headers,
        param=exc.param,
        code=exc.code,
        kind=exc.kind,
    )


API = EmulatedAPI(
    name="openai",
    title="an OpenAI-compatible model",
    prefixes=(f"{PREFIX}/",),
    exact=(PREFIX,),
    error=lambda status, message, headers: openai_error(status, message, headers),
    routers=lambda: [build_router()],
    exception_handlers=lambda: {OpenAIHTTPError: _error_handler},
    new_store=lambda agent, clock: ModelStore(clock),
    # The gateway counts nothing for the model: its requests and tokens are limited by the
    # model's own limiter (--model-limit), which needs the body to count tokens.
    default_limit="off",
    limit_help="default off: the model is limited by --model-limit (requests and tokens)",
    caller_key=bearer_or_api_key,
)
