"""What the Vectara client sends and reads, validated against Vectara's OpenAPI document.

Request bodies, query strings and headers are checked against the operation's schemas; every
response body used here is first validated against the spec, then read by the client. Known spec
defects (SOURCES.md section 3) are patched in the test, each with its reason.
"""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from prefect_sessions.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
)
from prefect_sessions.vectara import (
    AgentOutputEvent,
    AgentSession,
    AgentStreamError,
    ArtifactUploadEvent,
    ContextLimitExceededEvent,
    ImageReadEvent,
    InputMessageEvent,
    MessageReply,
    StreamingAgentOutput,
    StreamingThinking,
    ThinkingEvent,
    ToolInputEvent,
    ToolOutputEvent,
    UnknownEvent,
    VectaraCredentials,
    parse_event,
    parse_stream_event,
)
from tests.support.openapi import assert_valid, load_spec, request_schema, response_schema

SPEC = "vectara-agents.openapi.yaml"
BASE = "https://vectara.example.test"
KEY = "vectara-contract-canary-key-7f3a"
SESSIONS = "/v2/agents/{agent_key}/sessions"
SESSION = SESSIONS + "/{session_key}"
EVENTS = SESSION + "/events"
NOW = "2024-01-15T10:30:00Z"


@pytest.fixture
def spec() -> dict[str, Any]:
    return load_spec(SPEC)


@pytest.fixture
def credentials() -> VectaraCredentials:
    return VectaraCredentials(
        base_url=BASE, api_key=SecretStr(KEY), request_timeout_seconds=25, max_attempts=1
    )


def session_schema(spec: dict[str, Any]) -> dict[str, Any]:
    # AgentSession's `required` names `id`, but the property is `key` (SOURCES.md section 3).
    schema = copy.deepcopy(spec["components"]["schemas"]["AgentSession"])
    schema["required"] = ["key" if name == "id" else name for name in schema["required"]]
    return schema


def patched(spec: dict[str, Any]) -> dict[str, Any]:
    fixed = copy.deepcopy(spec)
    fixed["components"]["schemas"]["AgentSession"] = session_schema(spec)
    return fixed


def mapped(spec: dict[str, Any], union: str, kind: str) -> dict[str, Any]:
    """The schema a discriminated union maps ``kind`` to.

    The event schemas give ``type`` a default but no ``enum``, so an ``agent_output`` event also
    matches ``ThinkingEvent`` and a strict ``oneOf`` fails; the discriminator is what picks.
    """
    ref = spec["components"]["schemas"][union]["discriminator"]["mapping"][kind]
    return {"$ref": ref}


def header_params(spec: dict[str, Any], path: str, method: str) -> dict[str, dict[str, Any]]:
    params = spec["paths"][path][method]["parameters"]
    resolved = [
        spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
        for p in params
    ]
    return {p["name"]: p for p in resolved if p["in"] == "header"}


def query_params(spec: dict[str, Any], path: str, method: str) -> dict[str, dict[str, Any]]:
    params = spec["paths"][path][method]["parameters"]
    return {p["name"]: p for p in params if p.get("in") == "query"}


def session_body(key: str = "support_session_12345", **more: Any) -> dict[str, Any]:
    return {
        "key": key,
        "agent_key": "customer_support",
        "name": "Customer Support Session",
        "metadata": {"customer_id": "customer_12345", "priority": "high"},
        "enabled": True,
        "tti_minutes": 0,
        "created_at": NOW,
        **more,
    }


def every_event(session_key: str = "s1") -> list[dict[str, Any]]:
    """One event of every stored type, as the spec describes them."""
    tool = {"tool_call_id": "call_1", "tool_configuration_name": "search", "tool_name": "web"}
    artifact = {
        "artifact_id": "art_report_pdf_a3f2",
        "filename": "report.pdf",
        "mime_type": "application/pdf",
        "size_bytes": 2048,
    }
    events: list[dict[str, Any]] = [
        {"id": "aev_in", "type": "input_message", "messages": [{"type": "text", "content": "Hi"}]},
        {"id": "aev_think", "type": "thinking", "content": "Considering"},
        {"id": "aev_ti", "type": "tool_input", "tool_input": {"q": "x"}, **tool},
        {"id": "aev_to", "type": "tool_output", "tool_output": {"r": 1}, **tool},
        {"id": "aev_up", "type": "artifact_upload", "artifacts": [artifact]},
        {"id": "aev_img", "type": "image_read", "artifact_id": "art_photo_a3f2", "detail": "low"},
        {
            "id": "aev_ctx",
            "type": "context_limit_exceeded",
            "message": "Context limit exceeded",
            "context_limit": 128000,
            "actual_tokens": 140658,
        },
        {"id": "aev_out", "type": "agent_output", "content": "Here is your answer."},
    ]
    return [{**event, "session_key": session_key, "created_at": NOW} for event in events]


EXPECTED_CLASSES = [
    InputMessageEvent,
    ThinkingEvent,
    ToolInputEvent,
    ToolOutputEvent,
    ArtifactUploadEvent,
    ImageReadEvent,
    ContextLimitExceededEvent,
    AgentOutputEvent,
]


def sent_json(httpx_mock: Any) -> Any:
    return json.loads(httpx_mock.get_request().content)


# -- sessions ---------------------------------------------------------------------------------


async def test_create_session_request_response_and_headers_match_the_spec(
    httpx_mock, spec, credentials
):
    answer = session_body(description="Billing inquiry")
    assert_valid(spec, session_schema(spec), answer)
    httpx_mock.add_response(
        method="POST",
        url=f"{BASE}/v2/agents/customer_support/sessions",
        json=answer,
        status_code=201,
    )
    async with credentials.get_client() as client:
        session = await client.create_session(
            "customer_support",
            name="Customer Support Session",
            key="support_session_12345",
            description="Billing inquiry",
            metadata={"customer_id": "customer_12345", "priority": "high"},
            enabled=True,
            tti_minutes=60,
        )
    sent = sent_json(httpx_mock)
    assert_valid(spec, request_schema(spec, "post", SESSIONS), sent)
    assert sent == {
        "key": "support_session_12345",
        "name": "Customer Support Session",
        "description": "Billing inquiry",
        "metadata": {"customer_id": "customer_12345", "priority": "high"},
        "enabled": True,
        "tti_minutes": 60,
    }
    assert session == AgentSession.model_validate(answer)
    assert session.key == "support_session_12345"
    assert session.metadata["priority"] == "high"
    headers = httpx_mock.get_request().headers
    auth = spec["components"]["securitySchemes"]["ApiKeyAuth"]
    assert headers[auth["name"]] == KEY
    timeout = header_params(spec, SESSIONS, "post")["Request-Timeout"]
    assert_valid(spec, timeout["schema"], int(headers["Request-Timeout"]))
    assert headers["Request-Timeout"] == "25"


async def test_list_sessions_query_and_response_match_the_spec(httpx_mock, spec, credentials):
    answer = {"sessions": [session_body("a"), session_body("b")], "metadata": {}}
    assert_valid(patched(spec), response_schema(spec, "get", SESSIONS, "200"), answer)
    httpx_mock.add_response(method="GET", json=answer)
    async with credentials.get_client() as client:
        page = await client.get_sessions_page(
            "customer_support", filter="support.*", page_size=100, page_key="eyJvZmZzZXQiOjF9"
        )
    request = httpx_mock.get_request()
    documented = query_params(spec, SESSIONS, "get")
    sent = dict(request.url.params)
    assert set(sent) == set(documented) == {"filter", "limit", "page_key"}
    assert_valid(spec, documented["limit"]["schema"], int(sent["limit"]))
    assert_valid(spec, documented["filter"]["schema"], sent["filter"])
    assert [s.key for s in page.sessions] == ["a", "b"]
    assert page.page_key is None


async def test_update_session_sends_only_the_changed_fields(httpx_mock, spec, credentials):
    answer = session_body(enabled=False, metadata={"status": "escalated"})
    assert_valid(spec, response_schema(spec, "patch", SESSION, "200"), answer | {"id": "x"})
    assert_valid(spec, session_schema(spec), answer)
    httpx_mock.add_response(method="PATCH", json=answer)
    async with credentials.get_client() as client:
        session = await client.update_session(
            "customer_support", "s1", enabled=False, metadata={"status": "escalated"}
        )
    sent = sent_json(httpx_mock)
    assert_valid(spec, request_schema(spec, "patch", SESSION), sent)
    assert sent == {"enabled": False, "metadata": {"status": "escalated"}}
    assert session.enabled is False


async def test_delete_session_takes_the_documented_204(httpx_mock, spec, credentials):
    assert "204" in spec["paths"][SESSION]["delete"]["responses"]
    httpx_mock.add_response(method="DELETE", url=f"{BASE}/v2/agents/a/sessions/s1", status_code=204)
    async with credentials.get_client() as client:
        assert await client.delete_session("a", "s1") is True


# -- events -----------------------------------------------------------------------------------


async def test_send_message_request_and_every_event_type_match_the_spec(
    httpx_mock, spec, credentials
):
    events = every_event()
    for event in events:
        assert_valid(spec, mapped(spec, "AgentEvent", event["type"]), event)
    answer = {"session_key": "s1", "events": events}
    httpx_mock.add_response(method="POST", json=answer, status_code=201)
    async with credentials.get_client() as client:
        reply = await client.send_message("customer_support", "s1", "I need help")
    sent = sent_json(httpx_mock)
    assert_valid(spec, request_schema(spec, "post", EVENTS), sent)
    assert sent == {
        "type": "input_message",
        "messages": [{"type": "text", "content": "I need help"}],
        "stream_response": False,
    }
    assert [type(e) for e in reply.events] == EXPECTED_CLASSES[1:]  # the input echo left out
    assert reply.text == "Here is your answer."
    assert reply.input_event_id == "aev_in"
    assert reply.events[-1] == AgentOutputEvent.model_validate(events[-1])


async def test_list_and_get_events_match_the_spec(httpx_mock, spec, credentials):
    events = every_event()
    page_body = {"events": events, "metadata": {"page_key": "next-1"}}
    schemas = spec["components"]["schemas"]
    assert set(schemas["ListAgentEventsResponse"]["required"]) == {"events", "metadata"}
    httpx_mock.add_response(
        method="GET",
        url=f"{BASE}/v2/agents/a/sessions/s1/events?limit=8",
        json=page_body,
    )
    httpx_mock.add_response(
        method="GET", url=f"{BASE}/v2/agents/a/sessions/s1/events/aev_out", json=events[-1]
    )
    async with credentials.get_client() as client:
        page = await client.get_events_page("a", "s1", page_size=8)
        one = await client.get_event("a", "s1", "aev_out")
    assert [type(e) for e in page.events] == EXPECTED_CLASSES
    assert page.page_key == "next-1"
    assert isinstance(one, AgentOutputEvent)
    assert one.content == "Here is your answer."
    event_id = spec["paths"][EVENTS + "/{event_id}"]["get"]["parameters"][-1]
    assert_valid(spec, event_id["schema"], "aev_out")


def sse(*payloads: dict[str, Any]) -> bytes:
    return b"".join(f"data: {json.dumps(p)}\n\n".encode() for p in payloads)


STREAM = [
    {"type": "streaming_thinking", "content": "Let me", "created_at": NOW},
    {"type": "streaming_thinking_end", "created_at": NOW},
    {
        "type": "tool_input",
        "id": "aev_ti",
        "session_key": "s1",
        "created_at": NOW,
        "tool_call_id": "c1",
        "tool_configuration_name": "search",
        "tool_name": "web",
        "tool_input": {"q": "x"},
    },
    {"type": "streaming_agent_output", "content": "Hello, ", "created_at": NOW},
    {"type": "streaming_agent_output", "content": "world", "created_at": NOW},
    {"type": "streaming_agent_output_end", "created_at": NOW},
    {"type": "end"},
]


async def test_stream_request_and_data_lines_match_the_spec(httpx_mock, spec, credentials):
    for payload in STREAM:
        assert_valid(spec, mapped(spec, "AgentStreamedResponse", payload["type"]), payload)
    content = spec["paths"][EVENTS]["post"]["responses"]["201"]["content"]
    assert "text/event-stream" in content
    httpx_mock.add_response(
        method="POST",
        status_code=201,
        headers={"content-type": "text/event-stream"},
        content=sse(*STREAM),
    )
    async with credentials.get_client() as client:
        streamed = [e async for e in client.stream_message("a", "s1", "Hi")]
    sent = sent_json(httpx_mock)
    assert_valid(spec, request_schema(spec, "post", EVENTS), sent)
    assert sent["stream_response"] is True
    assert httpx_mock.get_request().headers["accept"] == "text/event-stream"
    assert [e.type for e in streamed] == [p["type"] for p in STREAM[:-1]]  # `end` ends it
    assert isinstance(streamed[0], StreamingThinking)
    assert isinstance(streamed[3], StreamingAgentOutput)
    assert streamed[3].content == "Hello, "


async def test_an_error_event_mid_stream_raises_after_what_came_before(
    httpx_mock, spec, credentials
):
    error = {"type": "error", "messages": ["agent_processing_failed"]}
    assert_valid(spec, mapped(spec, "AgentStreamedResponse", "error"), error)
    httpx_mock.add_response(
        method="POST",
        status_code=201,
        headers={"content-type": "text/event-stream"},
        content=sse(STREAM[3], error, STREAM[4], {"type": "end"}),
    )
    seen: list[str] = []

    async def consume(client: Any) -> None:
        async for event in client.stream_message("a", "s1", "Hi"):
            seen.append(event.type)

    async with credentials.get_client() as client:
        with pytest.raises(AgentStreamError, match="agent_processing_failed") as caught:
            await consume(client)
    assert seen == ["streaming_agent_output"]
    assert caught.value.retryable is False
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # Prefect states
    assert len(httpx_mock.get_requests()) == 1


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "schema_name", "body", "error_type"),
    [
        (
            400,
            "BadRequestError",
            {
                "messages": ["invalid_metadata"],
                "request_id": "req-400",
                "field_errors": {"metadata": "must be an object"},
            },
            InvalidRequestError,
        ),
        (403, "Error", {"messages": ["forbidden"], "request_id": "req-403"}, AuthenticationError),
        (
            404,
            "NotFoundError",
            {"messages": ["agent_not_found"], "request_id": "req-404", "id": "customer_support"},
            NotFoundError,
        ),
    ],
)
async def test_documented_error_bodies_become_typed_errors_with_the_request_id(
    httpx_mock, spec, credentials, status, schema_name, body, error_type
):
    documented = spec["paths"][SESSIONS]["post"]["responses"][str(status)]
    assert documented["content"]["application/json"]["schema"]["$ref"].endswith(schema_name)
    assert_valid(spec, documented["content"]["application/json"]["schema"], body)
    httpx_mock.add_response(method="POST", status_code=status, json=body)
    async with credentials.get_client() as client:
        with pytest.raises(error_type) as caught:
            await client.create_session("customer_support", name="n")
    error = caught.value
    assert error.request_id == body["request_id"]
    assert body["request_id"] in str(error)
    assert body["messages"][0] in str(error)
    assert "create session" in str(error)
    if status == 400:
        assert error.field_errors == {"metadata": "must be an object"}
        assert "metadata: must be an object" in str(error)


async def test_an_unreadable_send_message_answer_is_an_unknown_outcome(httpx_mock, credentials):
    httpx_mock.add_response(method="POST", status_code=201, text="<html>oops</html>")
    async with credentials.get_client() as client:
        with pytest.raises(OutcomeUnknownError, match="could not be read"):
            await client.send_message("a", "s1", "Hi")


# -- validation before sending --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.get_session("a/b", "s1"), "agent_key 'a/b' is not a valid Vectara key"),
        (lambda c: c.get_session("a", "has space"), "session_key 'has space'"),
        (lambda c: c.get_session("a", "k" * 51), "1 to 50 letters"),
        (lambda c: c.create_session("a", name=""), "name: String should have at least 1"),
        (lambda c: c.create_session("a", name="n", key="bad/key"), "key 'bad/key'"),
        (lambda c: c.create_session("a", name="n", tti_minutes=-1), "tti_minutes"),
        (lambda c: c.update_session("a", "s1"), "nothing to update"),
        (lambda c: c.send_message("a", "s1", "  "), "a message must be non-empty text"),
        (lambda c: c.get_sessions_page("a", page_size=101), "1 to 100 items per page"),
        (lambda c: c.get_event("a", "s1", "../x"), "event_id '../x'"),
    ],
)
async def test_bad_input_fails_before_anything_is_sent(httpx_mock, credentials, call, message):
    async with credentials.get_client() as client:
        with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
            await call(client)
    assert httpx_mock.get_requests() == []


# -- events we do not model ---------------------------------------------------------------------

_KNOWN = sorted(
    {
        "input_message",
        "artifact_upload",
        "tool_input",
        "tool_output",
        "thinking",
        "agent_output",
        "context_limit_exceeded",
        "image_read",
        "streaming_agent_output",
        "streaming_agent_output_end",
        "streaming_thinking",
        "streaming_thinking_end",
        "error",
        "end",
    }
)
_FIELD_NAMES = st.sampled_from(["content", "messages", "id", "tool_input", "x"])
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    kind=st.sampled_from(_KNOWN) | st.text(max_size=12),
    fields=st.dictionaries(
        st.sampled_from(["content", "messages", "id", "tool_input", "x"]), _json
    ),
)
def test_any_event_object_is_kept_never_dropped_or_raised(kind, fields):
    payload = {**fields, "type": kind}
    for parsed in (parse_event(payload), parse_stream_event(payload)):
        assert parsed.type == kind
        if isinstance(parsed, UnknownEvent):
            dumped = parsed.model_dump()
            assert all(dumped[name] == value for name, value in payload.items())


def test_an_unknown_event_type_keeps_every_field():
    raw = {"type": "future_kind", "id": "aev_9", "nested": {"a": [1, 2]}, "session_key": "s"}
    event = parse_event(raw)
    assert isinstance(event, UnknownEvent)
    assert event.model_dump() == raw
    assert isinstance(
        parse_stream_event({"type": "end"}), type(parse_stream_event({"type": "end"}))
    )


async def test_a_transport_error_on_send_message_is_not_retried(httpx_mock, credentials):
    creds = credentials.model_copy(update={"max_attempts": 5})
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), method="POST")
    async with creds.get_client() as client:
        with pytest.raises(OutcomeUnknownError):
            await client.send_message("a", "s1", "Hi")
    assert len(httpx_mock.get_requests()) == 1


# -- create session and retries -------------------------------------------------------------------


async def _no_wait(seconds: float) -> None:
    return None


async def test_create_with_a_key_whose_answer_was_lost_returns_the_session_it_made(
    httpx_mock, credentials
):
    creds = credentials.model_copy(update={"max_attempts": 3})
    url = f"{BASE}/v2/agents/a/sessions"
    httpx_mock.add_exception(httpx.ReadTimeout("lost"), method="POST", url=url)
    httpx_mock.add_response(
        method="POST", url=url, status_code=409, json={"messages": ["session exists"]}
    )
    made = session_body("mine", agent_key="a", name="n", metadata={"m": 1})
    httpx_mock.add_response(method="GET", url=f"{url}/mine", json=made)
    async with creds.get_client(sleep=_no_wait) as client:
        session = await client.create_session("a", name="n", key="mine", metadata={"m": 1})
    assert session.key == "mine"
    assert [r.method for r in httpx_mock.get_requests()] == ["POST", "POST", "GET"]


async def test_create_with_a_key_taken_by_a_different_session_still_fails(httpx_mock, credentials):
    creds = credentials.model_copy(update={"max_attempts": 3})
    url = f"{BASE}/v2/agents/a/sessions"
    httpx_mock.add_exception(httpx.ReadTimeout("lost"), method="POST", url=url)
    httpx_mock.add_response(
        method="POST", url=url, status_code=409, json={"messages": ["session exists"]}
    )
    other = session_body("mine", agent_key="a", name="someone else's")
    httpx_mock.add_response(method="GET", url=f"{url}/mine", json=other)
    async with creds.get_client(sleep=_no_wait) as client:
        with pytest.raises(InvalidRequestError, match="session exists"):
            await client.create_session("a", name="n", key="mine")


async def test_create_without_a_key_is_never_sent_twice(httpx_mock, credentials):
    creds = credentials.model_copy(update={"max_attempts": 3})
    httpx_mock.add_exception(httpx.ReadTimeout("lost"), method="POST")
    async with creds.get_client(sleep=_no_wait) as client:
        with pytest.raises(OutcomeUnknownError, match="create session"):
            await client.create_session("a", name="n")
    assert len(httpx_mock.get_requests()) == 1


async def test_an_invalid_agent_configuration_422_on_send_message_is_an_invalid_request(
    httpx_mock, spec, credentials
):
    documented = spec["paths"][EVENTS]["post"]["responses"]["422"]
    body = {"messages": ["invalid instruction template"], "request_id": "req-422"}
    assert_valid(spec, documented["content"]["application/json"]["schema"], body)
    httpx_mock.add_response(method="POST", status_code=422, json=body)
    async with credentials.get_client() as client:
        with pytest.raises(InvalidRequestError, match="invalid instruction template") as caught:
            await client.send_message("a", "s1", "Hi")
    assert caught.value.request_id == "req-422"
    assert caught.value.retryable is False


def test_a_known_event_of_unexpected_shape_is_kept_and_does_not_break_the_reply():
    odd = {"type": "agent_output", "id": "aev_1", "content": {"rich": "text"}, "created_at": "?"}
    good = {"type": "agent_output", "id": "aev_2", "content": "Final answer."}
    events = [parse_event(odd), parse_event(good)]
    reply = MessageReply.from_events("s1", events)
    assert isinstance(reply.events[0], UnknownEvent)
    assert reply.events[0].model_dump() == odd
    assert reply.text == "Final answer."
    assert MessageReply.model_validate(reply.model_dump()).events[0].type == "agent_output"
