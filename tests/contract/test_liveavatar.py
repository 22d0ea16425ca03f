"""LiveAvatar request and response shapes against the vendor OpenAPI (pytest-httpx), the code-1000
envelope, FastAPI 422 mapping, idempotency per endpoint, and secrets kept out of errors."""

from __future__ import annotations

import json
import pickle
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pytest_httpx import HTTPXMock

from prefect_sessions.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    ProviderUnavailableError,
)
from prefect_sessions.liveavatar import (
    AvatarPersona,
    FullSessionConfig,
    LiteSessionConfig,
    LiveAvatarClient,
    LiveAvatarCredentials,
    LiveAvatarResponseError,
    SessionToken,
)
from tests.support.liveavatar_app import component, request_schema, response_schema
from tests.support.liveavatar_fixtures import (
    API_KEY,
    AVATAR_ID,
    RecordingSleep,
    client_options,
)

BASE = "https://api.liveavatar.test"
SESSION_ID = "6f9619ff-8b86-4d01-b42d-00cf4fc964ff"
TOKEN = "CANARY-session-token-contract"
CLIENT_TOKEN = "CANARY-livekit-client-contract"


def ok(data: Any) -> dict[str, Any]:
    return {"code": 1000, "data": data, "message": "Success"}


def entry(**extra: Any) -> dict[str, Any]:
    return {
        "id": SESSION_ID,
        "created_at": "2026-05-20T10:00:00Z",
        "updated_at": "2026-05-20T10:05:00Z",
        "duration": 300,
        "source": "API",
        "mode": "LITE",
        "is_sandbox": True,
        "credits_consumed": 0.0,
        **extra,
    }


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def client(sleep: RecordingSleep) -> LiveAvatarClient:
    credentials = LiveAvatarCredentials(api_key=SecretStr(API_KEY), base_url=BASE)
    return credentials.get_client(**client_options(sleep))


async def test_create_session_token_sends_a_documented_body_with_the_api_key(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    data = {"session_id": SESSION_ID, "session_token": TOKEN}
    response_schema("/v1/sessions/token", "post", "200").validate(ok(data))
    httpx_mock.add_response(method="POST", url=f"{BASE}/v1/sessions/token", json=ok(data))
    config = FullSessionConfig(
        avatar_id=AVATAR_ID, avatar_persona=AvatarPersona(), dynamic_variables={"name": "Ada"}
    )
    async with client:
        token = await client.create_session_token(config)

    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["x-api-key"] == API_KEY
    assert "authorization" not in request.headers
    request_schema("/v1/sessions/token").validate(body_of(request))
    assert body_of(request)["dynamic_variables"] == {"name": "Ada"}
    assert token.session_id == SESSION_ID
    assert token.session_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(token)


async def test_a_mapping_config_is_validated_before_sending(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    data = {"session_id": SESSION_ID, "session_token": TOKEN}
    httpx_mock.add_response(method="POST", url=f"{BASE}/v1/sessions/token", json=ok(data))
    async with client:
        await client.create_session_token({"mode": "LITE", "avatar_id": AVATAR_ID})
        with pytest.raises(ValueError, match="avatar_persona"):
            await client.create_session_token({"avatar_id": AVATAR_ID})
    (request,) = httpx_mock.get_requests()
    assert body_of(request) == {"avatar_id": AVATAR_ID, "is_sandbox": False, "mode": "LITE"}


async def test_start_sends_the_session_token_as_bearer_and_no_api_key(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    data = {
        "session_id": SESSION_ID,
        "livekit_url": "wss://livekit.example",
        "livekit_client_token": CLIENT_TOKEN,
        "livekit_agent_token": "CANARY-agent",
        "max_session_duration": 600,
        "ws_url": "wss://ws.example/session?token=CANARY-ws",
    }
    response_schema("/v1/sessions/start", "post", "201").validate(ok(data))
    httpx_mock.add_response(
        method="POST", url=f"{BASE}/v1/sessions/start", status_code=201, json=ok(data)
    )
    token = SessionToken(session_id=SESSION_ID, session_token=SecretStr(TOKEN))
    async with client:
        started = await client.start_session(token)

    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert "x-api-key" not in request.headers
    assert request.content == b""  # the operation has no request body
    assert started.session_id == SESSION_ID
    assert started.max_session_duration == 600
    assert started.livekit_client_token is not None
    assert started.livekit_client_token.get_secret_value() == CLIENT_TOKEN
    assert "CANARY" not in repr(started)


async def test_start_refuses_a_plain_string_token(httpx_mock: HTTPXMock, client: LiveAvatarClient):
    async with client:
        with pytest.raises(ConfigurationError, match="SecretStr"):
            await client.start_session(TOKEN)  # type: ignore[arg-type]
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize(
    ("status", "attempts"),
    [(502, 1), (503, 2)],
    ids=["502-may-have-acted", "503-did-not-act"],
)
async def test_start_is_not_idempotent(
    httpx_mock: HTTPXMock, client: LiveAvatarClient, status: int, attempts: int
):
    url = f"{BASE}/v1/sessions/start"
    httpx_mock.add_response(method="POST", url=url, status_code=status)
    if attempts == 2:
        httpx_mock.add_response(
            method="POST", url=url, status_code=201, json=ok({"session_id": SESSION_ID})
        )
    async with client:
        call = client.start_session(SecretStr(TOKEN))
        if attempts == 1:
            with pytest.raises(ProviderUnavailableError, match="start session"):
                await call
        else:
            assert (await call).session_id == SESSION_ID
    assert len(httpx_mock.get_requests()) == attempts


async def test_keep_alive_and_stop_send_documented_bodies_and_are_retried(
    httpx_mock: HTTPXMock, client: LiveAvatarClient, sleep: RecordingSleep
):
    response_schema("/v1/sessions/stop", "post", "200").validate(ok(None))
    for path in ("keep-alive", "stop"):
        url = f"{BASE}/v1/sessions/{path}"
        httpx_mock.add_response(method="POST", url=url, status_code=502)
        httpx_mock.add_response(method="POST", url=url, json=ok(None))
    async with client:
        await client.keep_alive(SESSION_ID)
        await client.stop_session(SESSION_ID, "AGENT_HANG_UP")

    keep, keep_again, stop, stop_again = httpx_mock.get_requests()
    for request in (keep, stop):
        assert request.headers["x-api-key"] == API_KEY
    component("KeepSessionAliveSchema").validate(body_of(keep))
    component("StopSessionSchema").validate(body_of(stop))
    assert body_of(keep) == body_of(keep_again) == {"session_id": SESSION_ID}
    assert body_of(stop) == body_of(stop_again)
    assert body_of(stop) == {"session_id": SESSION_ID, "reason": "AGENT_HANG_UP"}
    assert len(sleep.calls) == 2


async def test_bad_session_ids_and_reasons_fail_before_any_request(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    async with client:
        with pytest.raises(ConfigurationError, match="session_id"):
            await client.get_session("../avatars")
        with pytest.raises(ConfigurationError, match="reason must be one of"):
            await client.stop_session(SESSION_ID, "FINISHED")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="page_size"):
            await client.list_sessions("active", page_size=101)
    assert httpx_mock.get_requests() == []


async def test_list_sessions_reads_every_page_with_documented_queries(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    ids = [f"6f9619ff-8b86-4d01-b42d-00cf4fc964{n:02x}" for n in range(3)]
    first = {"count": 3, "next": f"{BASE}/v1/sessions?page=2", "results": []}
    first["results"] = [entry(id=ids[0], end_at="2026-05-20T10:05:00Z", end_reason="USER_CLOSED")]
    first["results"].append(entry(id=ids[1], end_at="2026-05-20T10:05:00Z", end_reason=None))
    second = {"count": 3, "previous": f"{BASE}/v1/sessions?page=1", "results": [entry(id=ids[2])]}
    schema = response_schema("/v1/sessions", "get", "200")
    for page, data in ((1, first), (2, second)):
        schema.validate(ok(data))
        httpx_mock.add_response(
            method="GET",
            url=httpx.URL(
                f"{BASE}/v1/sessions",
                params={"type": "historic", "page_size": 2, "page": page, "avatar_id": AVATAR_ID},
            ),
            json=ok(data),
        )
    async with client:
        sessions = await client.list_sessions("historic", avatar_id=AVATAR_ID, page_size=2)

    assert [s.id for s in sessions] == ids
    assert sessions[0].end_reason == "USER_CLOSED"
    assert sessions[2].end_at is None
    parameters = {p["name"]: p for p in _operation("/v1/sessions", "get")["parameters"]}
    for request in httpx_mock.get_requests():
        query = dict(request.url.params)
        assert query["type"] in parameters["type"]["schema"]["enum"]
        assert int(query["page_size"]) <= parameters["page_size"]["schema"]["maximum"]
        assert set(query) <= set(parameters)


async def test_get_session_reads_a_historic_entry(httpx_mock: HTTPXMock, client: LiveAvatarClient):
    data = entry(end_at="2026-05-20T10:05:00Z", end_reason="IDLE_TIMEOUT", future_field=[1])
    response_schema("/v1/sessions/{session_id}", "get", "200").validate(ok(data))
    httpx_mock.add_response(method="GET", url=f"{BASE}/v1/sessions/{SESSION_ID}", json=ok(data))
    async with client:
        session = await client.get_session(SESSION_ID.upper())
    assert session.end_reason == "IDLE_TIMEOUT"
    assert session.model_extra == {"future_field": [1]}


async def test_transcript_follows_next_timestamp_until_there_is_none(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    def utterance(ts: int, role: str) -> dict[str, Any]:
        return {
            "role": role,
            "transcript": f"t{ts}",
            "absolute_timestamp": ts,
            "relative_timestamp": ts - 100,
        }

    def page(active: bool, following: int | None, *stamps: int) -> dict[str, Any]:
        data = [utterance(ts, "avatar" if ts % 2 else "user") for ts in stamps]
        body: dict[str, Any] = {"session_active": active, "transcript_data": data}
        if following is not None:
            body["next_timestamp"] = following
        return body

    pages = [
        (None, page(True, 102, 100, 101)),
        (102, page(True, 104, 102, 103)),
        (104, page(False, None, 104)),
    ]
    schema = response_schema("/v1/sessions/{session_id}/transcript", "get", "200")
    for start, data in pages:
        schema.validate(ok(data))
        params = {} if start is None else {"start_timestamp": start}
        url = httpx.URL(f"{BASE}/v1/sessions/{SESSION_ID}/transcript", params=params)
        httpx_mock.add_response(method="GET", url=url, json=ok(data))
    async with client:
        transcript = await client.get_transcript(SESSION_ID)
    assert [e.absolute_timestamp for e in transcript.entries] == [100, 101, 102, 103, 104]
    assert [e.role for e in transcript.entries][:2] == ["user", "avatar"]
    assert transcript.pages == 3
    assert transcript.session_active is False
    assert transcript.next_timestamp is None


async def test_transcript_stops_when_the_cursor_does_not_move(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    stuck = {
        "session_active": True,
        "next_timestamp": 7,
        "transcript_data": [
            {"role": "user", "transcript": "hi", "absolute_timestamp": 7, "relative_timestamp": 0}
        ],
    }
    httpx_mock.add_response(method="GET", json=ok(stuck), is_reusable=True)
    async with client:
        transcript = await client.get_transcript(SESSION_ID, start_timestamp=7)
    assert len(httpx_mock.get_requests()) == 1
    assert [e.transcript for e in transcript.entries] == ["hi"]
    assert transcript.next_timestamp == 7  # where to poll again for an active session


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"code": 4001, "data": None, "message": "Avatar not found"}, 4001),
        ({"code": 100, "data": {"session_id": SESSION_ID}, "message": "?"}, 100),
        ({"data": {"session_id": SESSION_ID}}, None),
        (["not", "an", "envelope"], None),
    ],
    ids=["error-code", "openapi-default-code", "no-code", "not-an-object"],
)
async def test_anything_but_code_1000_in_a_200_is_a_typed_error(
    httpx_mock: HTTPXMock, client: LiveAvatarClient, body: Any, code: int | None
):
    httpx_mock.add_response(method="POST", url=f"{BASE}/v1/sessions/keep-alive", json=body)
    async with client:
        with pytest.raises(LiveAvatarResponseError) as caught:
            await client.keep_alive(SESSION_ID)
    error = caught.value
    assert error.envelope_code == code
    assert error.status_code == 200
    assert error.retryable is False
    assert "keep session alive" in str(error)
    assert len(httpx_mock.get_requests()) == 1
    if code == 4001:
        assert "Avatar not found" in str(error)
        assert "not 1000" in str(error)
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is LiveAvatarResponseError
    assert restored.envelope_code == code
    assert str(restored) == str(error)


async def test_a_fastapi_422_becomes_an_invalid_request_naming_the_field(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    detail = [
        {
            "loc": ["body", "FULL", "avatar_persona", "context_id"],
            "msg": "Input should be a valid UUID",
            "type": "uuid_parsing",
            "input": "nope",
        }
    ]
    component("HTTPValidationError").validate({"detail": detail})
    httpx_mock.add_response(
        method="POST", url=f"{BASE}/v1/sessions/token", status_code=422, json={"detail": detail}
    )
    async with client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.create_session_token(LiteSessionConfig(avatar_id=AVATAR_ID))
    assert caught.value.field_errors == {
        "FULL.avatar_persona.context_id": "Input should be a valid UUID"
    }
    assert len(httpx_mock.get_requests()) == 1


async def test_secrets_the_server_echoes_are_redacted_from_errors(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    httpx_mock.add_response(
        method="POST",
        url=f"{BASE}/v1/sessions/token",
        status_code=401,
        json={"code": 401, "data": None, "message": f"Invalid API key {API_KEY}"},
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{BASE}/v1/sessions/start",
        json={"code": 4003, "data": None, "message": f"Token {TOKEN} expired"},
    )
    httpx_mock.add_response(
        method="GET",
        url=f"{BASE}/v1/sessions/{SESSION_ID}",
        status_code=404,
        json={"code": 404, "data": None, "message": "Session not found"},
    )
    async with client:
        with pytest.raises(AuthenticationError) as auth_error:
            await client.create_session_token(LiteSessionConfig(avatar_id=AVATAR_ID))
        with pytest.raises(LiveAvatarResponseError) as start_error:
            await client.start_session(SecretStr(TOKEN))
        with pytest.raises(NotFoundError, match="Session not found"):
            await client.get_session(SESSION_ID)
    assert "Invalid API key" in str(auth_error.value)
    assert API_KEY not in str(auth_error.value)
    assert "expired" in str(start_error.value)
    assert TOKEN not in str(start_error.value)


async def test_a_malformed_token_response_names_the_field_but_not_the_token(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    httpx_mock.add_response(
        method="POST", url=f"{BASE}/v1/sessions/token", json=ok({"session_token": TOKEN})
    )
    async with client:
        with pytest.raises(LiveAvatarResponseError) as caught:
            await client.create_session_token(LiteSessionConfig(avatar_id=AVATAR_ID))
    assert "session_id" in str(caught.value)
    assert TOKEN not in str(caught.value)
    # The chained pydantic error is hidden, and would not show the input anyway.
    assert caught.value.__suppress_context__
    assert TOKEN not in str(caught.value.__context__)


async def test_delete_session_events_uses_the_documented_path(
    httpx_mock: HTTPXMock, client: LiveAvatarClient
):
    httpx_mock.add_response(
        method="DELETE", url=f"{BASE}/v1/sessions/{SESSION_ID}/events", json=ok(None)
    )
    async with client:
        await client.delete_session_events(SESSION_ID)
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["x-api-key"] == API_KEY


def _operation(path: str, method: str) -> dict[str, Any]:
    from tests.support.liveavatar_app import vendor_spec

    operation: dict[str, Any] = vendor_spec()["paths"][path][method]
    return operation
