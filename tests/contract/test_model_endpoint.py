"""The emulated model endpoint, judged by clients nobody here wrote: the official ``openai`` SDK,
and schemathesis running OpenAI's own OpenAPI document (its chat completions, embeddings and
models operations, kept in ``vendor_documents``: see its SOURCES.md).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, seed, settings

from prefect_sessions.conversation.judging import VERDICT_SCHEMA
from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, run_emulator

openai = pytest.importorskip("openai")
schemathesis = pytest.importorskip("schemathesis")
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

KEPT = Path(__file__).resolve().parent / "vendor_documents"
OPENAI_DOCUMENT = "openai-model-2026-08.openapi.json"
PREFIX = "/openai/v1"
KEY = "sk-contract-0123456789"
JUDGE_PROMPT = (
    '<rubric>\nThe agent says "42 euros".\n</rubric>\n'
    "<conversation>\nUser: my balance?\nAgent: Your balance is 42 euros.\n</conversation>"
)


def at_model_prefix(document: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's document with its paths where the emulator serves them (under /openai/v1)."""
    moved = dict(document)
    moved["paths"] = {f"{PREFIX}{path}": item for path, item in document["paths"].items()}
    return moved


@pytest.fixture(scope="module")
def model_emulator() -> Iterator[EmulatorHandle]:
    config = EmulatorConfig(model_limit=None, api_keys=frozenset({KEY}))
    with run_emulator(config) as emulator:
        yield emulator


@pytest.fixture
def sdk(model_emulator: EmulatorHandle) -> Iterator[Any]:
    with openai.OpenAI(
        base_url=f"{model_emulator.url}{PREFIX}", api_key=KEY, max_retries=0
    ) as client:
        yield client


def test_the_sdk_gets_a_verdict_in_the_json_schema_it_asked_for(sdk: Any) -> None:
    answer = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Grade."},
            {"role": "user", "content": JUDGE_PROMPT},
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA, "strict": True},
        },
        temperature=0,
        seed=0,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "stop"
    assert json.loads(choice.message.content) == {
        "reason": "The agent said '42 euros'.",
        "pass": True,
        "score": 1.0,
    }
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.usage.prompt_tokens > 0


def test_the_sdk_streams_a_completion_with_its_usage_last(sdk: Any) -> None:
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello there"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "This is the emulator's model. You said: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0


def test_the_sdk_reads_embeddings_as_floats_and_as_base64(sdk: Any) -> None:
    floats = sdk.embeddings.create(model="text-embedding-3-small", input=["a card", "a card"])
    assert [row.index for row in floats.data] == [0, 1]
    assert floats.data[0].embedding == floats.data[1].embedding
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1.0) < 1e-4
    short = sdk.embeddings.create(
        model="text-embedding-3-small", input="a card", dimensions=64, encoding_format="base64"
    )
    vector = short.data[0].embedding
    if isinstance(vector, str):  # the SDK hands base64 back as it came
        vector = list(struct.unpack("<64f", base64.b64decode(vector)))
    assert len(vector) == 64


def test_the_sdk_raises_its_own_errors_from_the_envelope(
    sdk: Any, model_emulator: EmulatorHandle
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as empty:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert empty.value.param == "messages"
    wrong = openai.OpenAI(
        base_url=f"{model_emulator.url}{PREFIX}", api_key="sk-wrong", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert refused.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(refused.value)
    assert [m.id for m in sdk.models.list()][:2] == ["gpt-4o-mini", "gpt-4o"]
    assert sdk.models.retrieve("gpt-4o-mini").owned_by == "prefect-sessions"


def test_a_limited_model_answers_429_with_openais_headers() -> None:
    with (
        run_emulator(EmulatorConfig.from_options(model_limit="2/60s tokens=100000")) as emulator,
        openai.OpenAI(base_url=f"{emulator.url}{PREFIX}", api_key=KEY, max_retries=0) as sdk,
    ):
        asked = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        first = sdk.chat.completions.with_raw_response.create(**asked, max_tokens=50)
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert first.headers["x-ratelimit-limit-tokens"] == "100000"
        sdk.chat.completions.create(**asked, max_tokens=50)
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(**asked, max_tokens=50)
        assert refused.value.code == "rate_limit_exceeded"
        assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.value.response.headers["x-ratelimit-reset-requests"].endswith("s")
        assert "Rate limit reached for gpt-4o-mini on requests per min" in refused.value.message


def nullable_as_openapi_31(schema: Any) -> Any:
    """OpenAI's document says ``openapi: 3.1.0`` but marks its null fields with 3.0's
    ``nullable: true``, which 3.1 (JSON Schema) ignores; OpenAI answers ``"logprobs": null``, and
    its SDK reads that. The keyword is read here as the document means it: the type or null."""
    if isinstance(schema, list):
        return [nullable_as_openapi_31(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    read = {key: nullable_as_openapi_31(value) for key, value in schema.items()}
    if read.pop("nullable", False) is not True:
        return read
    if "enum" in read and None not in read["enum"]:
        read["enum"] = [*read["enum"], None]
    if isinstance(read.get("type"), str):
        return {**read, "type": [read["type"], "null"]}
    return {"anyOf": [read, {"type": "null"}]}


def test_nullable_is_read_as_the_type_or_null() -> None:
    read = nullable_as_openapi_31(
        {
            "properties": {
                "a": {"type": "object", "nullable": True},
                "b": {"$ref": "#/x", "nullable": True},
            }
        }
    )
    assert read["properties"]["a"] == {"type": ["object", "null"]}
    assert read["properties"]["b"] == {"anyOf": [{"$ref": "#/x"}, {"type": "null"}]}


def _document() -> dict[str, Any]:
    document = json.loads((KEPT / OPENAI_DOCUMENT).read_text(encoding="utf-8"))
    return at_model_prefix(nullable_as_openapi_31(document))


def _stream_chunks_conform(response: Any) -> None:
    """A streamed answer: each event's data, parsed, against the document's chunk schema.
    (schemathesis validates the event object itself, not its JSON data, against that schema:
    OpenAI's document describes the data.)"""
    from jsonschema import Draft202012Validator

    root = {**_document(), "$ref": "#/components/schemas/CreateChatCompletionStreamResponse"}
    validator = Draft202012Validator(root)
    events = [
        line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")
    ]
    assert events[-1] == "[DONE]"
    for data in events[:-1]:
        validator.validate(json.loads(data))


def test_a_streamed_answer_conforms_chunk_by_chunk(model_emulator: EmulatorHandle) -> None:
    """Generated cases stream only now and then; this one always does, with and without usage."""
    for options in ({}, {"stream_options": {"include_usage": True}}):
        response = requests.post(
            f"{model_emulator.url}{PREFIX}/chat/completions",
            headers={"authorization": f"Bearer {KEY}"},
            json={
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "hello"}],
                "stream": True,
                **options,
            },
            timeout=10,
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        _stream_chunks_conform(response)


def _operations() -> Iterator[Any]:
    document = _document()
    for result in schemathesis.openapi.from_dict(document).get_all_operations():
        operation = result.ok()
        yield pytest.param(operation, id=f"{operation.method.upper()} {operation.path}")


#: Statuses OpenAI answers with that its document does not list for these operations; such
#: answers are checked for OpenAI's error envelope instead of the document's schemas.
UNDOCUMENTED = {
    400: "a value the schema allows and OpenAI refuses (an empty model, a stream_options "
    "without stream, a json_object format without the word JSON in the messages)",
    404: "a generated model name that the endpoint does not serve (model_not_found)",
}
SERVED = {"chat/completions": "gpt-4o-mini", "embeddings": "text-embedding-3-small"}


def _served_model(case: Any) -> None:
    """Two generated model names in three become one the endpoint serves, so that most requests
    reach the answer the document describes; the rest check the 404."""
    for suffix, model in SERVED.items():
        body = case.body
        if (
            case.path.endswith(suffix)
            and isinstance(body, dict)
            and len(str(body.get("model"))) % 3
        ):
            body["model"] = model
    parameters = case.path_parameters or {}
    if "model" in parameters and len(str(parameters["model"])) % 3:
        parameters["model"] = "gpt-4o-mini"


@pytest.mark.parametrize("operation", list(_operations()))
def test_the_emulated_model_answers_as_openais_document_says(
    operation: Any, model_emulator: EmulatorHandle
) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    checks = (status_code_conformance, content_type_conformance, response_schema_conformance)
    answered: set[int] = set()
    with requests.Session() as session:
        for number in (1, 2):

            @seed(number)
            @settings(
                max_examples=15,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def check(case: Any) -> None:
                _served_model(case)
                response = case.call(base_url=model_emulator.url, headers=headers, session=session)
                answered.add(response.status_code)
                if response.status_code in UNDOCUMENTED:
                    error = response.json()["error"]
                    assert isinstance(error["message"], str)
                    assert isinstance(error["type"], str)
                    assert set(error) == {"message", "type", "param", "code"}
                    return
                kind = response.headers.get("content-type") or [""]
                if str(kind[0] if isinstance(kind, list) else kind).startswith("text/event-stream"):
                    case.validate_response(response, checks=checks[:2])
                    _stream_chunks_conform(response)
                    return
                case.validate_response(response, checks=checks)

            check()
    assert 200 in answered  # the documented answer itself was checked, not only refusals
