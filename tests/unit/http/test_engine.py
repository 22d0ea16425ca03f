"""The HTTP engine's retry, idempotency and error-mapping behaviour (request and response shapes,
with pytest-httpx; waits are exact because the clock is fake)."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr
from pytest_httpx import HTTPXMock

from prefect_sessions import __version__
from prefect_sessions.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
)
from prefect_sessions.http import HttpClient, RetryPolicy, SecretHeaderAuth
from tests.conftest import API_KEY, BASE_URL

URL = f"{BASE_URL}/v4/interact"


async def interact(client: HttpClient) -> httpx.Response:
    async with client:
        return await client.request(
            "POST", "/v4/interact", operation="interact", idempotent=False, json={"action": {}}
        )


async def get_state(client: HttpClient) -> httpx.Response:
    async with client:
        return await client.request("GET", "/state/user/u1", operation="get state", idempotent=True)


@pytest.mark.parametrize(
    ("header", "value", "expected_sleep"),
    [
        # Integer delta-seconds are floored by the server: jitter spreads over the next second.
        ("retry-after", "0", 0.5),
        ("retry-after", "1.5", 1.5 + 0.5 * 0.2 * 1.5),
        ("retry-after-ms", "250", 0.25 + 0.5 * (0.2 * 0.25 + 0.001)),
    ],
)
async def test_429_then_200_waits_the_hint_then_succeeds(
    httpx_mock: HTTPXMock, make_client, fake_time, header, value, expected_sleep
):
    httpx_mock.add_response(url=URL, status_code=429, headers={header: value})
    httpx_mock.add_response(url=URL, json={"traces": []})
    client = make_client()
    response = await interact(client)
    assert response.json() == {"traces": []}
    assert len(httpx_mock.get_requests()) == 2
    assert fake_time.sleeps == [pytest.approx(expected_sleep)]
    assert client.stats.rate_limited == 1
    assert client.stats.retries == 1


async def test_429_with_an_http_date_waits_until_that_date(
    httpx_mock: HTTPXMock, make_client, fake_time
):
    when = datetime.now(timezone.utc) + timedelta(seconds=5)
    httpx_mock.add_response(
        url=URL, status_code=429, headers={"retry-after": format_datetime(when, usegmt=True)}
    )
    httpx_mock.add_response(url=URL, json={"traces": []})
    await interact(make_client())
    (slept,) = fake_time.sleeps
    # The date has whole-second precision and a little time passed: at least 3.9 s remain.
    assert 3.9 <= slept <= 5.0 * 1.2 + 1.0


async def test_429_with_only_a_reset_time_waits_until_the_reset(
    httpx_mock: HTTPXMock, make_client, fake_time
):
    reset = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
    httpx_mock.add_response(url=URL, status_code=429, headers={"x-ratelimit-reset": reset})
    httpx_mock.add_response(url=URL, json={"traces": []})
    await interact(make_client())
    assert 1.9 <= fake_time.sleeps[0] <= 2.0 * 1.2


async def test_a_hint_beyond_the_budget_raises_at_once_without_an_early_retry(
    httpx_mock: HTTPXMock, make_client, fake_time
):
    httpx_mock.add_response(url=URL, status_code=429, headers={"retry-after": "120"})
    with pytest.raises(RateLimitedError) as caught:
        await interact(make_client(retry=RetryPolicy(max_wait_seconds=60)))
    assert len(httpx_mock.get_requests()) == 1
    assert fake_time.sleeps == []
    error = caught.value
    assert error.retry_after == 120.0
    assert error.status_code == 429
    assert "asked to wait 120.0 s" in str(error)
    assert "not retrying early" in str(error)


async def test_the_budget_is_shared_by_all_waits_of_one_request(
    httpx_mock: HTTPXMock, make_client, fake_time
):
    httpx_mock.add_response(url=URL, status_code=429, headers={"retry-after-ms": "40000"})
    httpx_mock.add_response(url=URL, status_code=429, headers={"retry-after-ms": "40000"})
    with pytest.raises(RateLimitedError) as caught:
        await interact(make_client(retry=RetryPolicy(max_wait_seconds=60, jitter_ratio=0)))
    assert len(httpx_mock.get_requests()) == 2
    assert fake_time.sleeps == [pytest.approx(40.0005)]
    assert caught.value.attempts == 2
    assert "of the 60 s retry budget" in str(caught.value)


async def test_attempts_are_bounded(httpx_mock: HTTPXMock, make_client):
    httpx_mock.add_response(
        url=URL, status_code=429, headers={"retry-after": "0"}, is_reusable=True
    )
    with pytest.raises(RateLimitedError) as caught:
        await interact(make_client(retry=RetryPolicy(max_attempts=4)))
    assert len(httpx_mock.get_requests()) == 4
    assert str(caught.value).endswith("after 4 attempts")
    assert str(caught.value).count("attempts") == 1


async def test_malformed_hint_falls_back_to_backoff(httpx_mock: HTTPXMock, make_client, fake_time):
    httpx_mock.add_response(url=URL, status_code=429, headers={"retry-after": "soon-ish"})
    httpx_mock.add_response(url=URL, status_code=429, headers={"retry-after": "99999999999"})
    httpx_mock.add_response(url=URL, json={"traces": []})
    await interact(make_client())
    # Full jitter with rand=0.5 under ceilings 0.5 and 1.0.
    assert fake_time.sleeps == [0.25, 0.5]


async def test_read_timeout_on_a_non_idempotent_request_is_outcome_unknown_and_sent_once(
    httpx_mock: HTTPXMock, make_client
):
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"), url=URL)
    with pytest.raises(OutcomeUnknownError) as caught:
        await interact(make_client())
    assert len(httpx_mock.get_requests()) == 1
    assert "may have acted" in str(caught.value)
    assert caught.value.retryable is False


async def test_connection_reset_mid_response_on_a_non_idempotent_request_is_outcome_unknown(
    httpx_mock: HTTPXMock, make_client
):
    httpx_mock.add_exception(httpx.RemoteProtocolError("peer closed connection"), url=URL)
    with pytest.raises(OutcomeUnknownError):
        await interact(make_client())
    assert len(httpx_mock.get_requests()) == 1


async def test_a_connection_that_failed_before_sending_is_retried_even_when_not_idempotent(
    httpx_mock: HTTPXMock, make_client
):
    httpx_mock.add_exception(httpx.ConnectError("connection refused"), url=URL)
    httpx_mock.add_response(url=URL, json={"traces": []})
    response = await interact(make_client())
    assert response.status_code == 200
    assert len(httpx_mock.get_requests()) == 2


async def test_read_timeout_on_an_idempotent_request_is_retried(httpx_mock: HTTPXMock, make_client):
    state_url = f"{BASE_URL}/state/user/u1"
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"), url=state_url)
    httpx_mock.add_response(url=state_url, json={"variables": {}})
    response = await get_state(make_client())
    assert response.json() == {"variables": {}}


async def test_503_is_retried_even_for_a_non_idempotent_request(
    httpx_mock: HTTPXMock, make_client, fake_time
):
    httpx_mock.add_response(url=URL, status_code=503)
    httpx_mock.add_response(url=URL, json={"traces": []})
    await interact(make_client())
    assert len(httpx_mock.get_requests()) == 2
    assert fake_time.sleeps == [0.25]


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_other_5xx_on_a_non_idempotent_request_are_not_retried(
    httpx_mock: HTTPXMock, make_client, status
):
    httpx_mock.add_response(url=URL, status_code=status, json={"message": "upstream broke"})
    with pytest.raises(ProviderUnavailableError) as caught:
        await interact(make_client())
    assert len(httpx_mock.get_requests()) == 1
    assert "may have acted" in str(caught.value)


@pytest.mark.parametrize("status", [408, 502, 503, 504])
async def test_retryable_statuses_are_retried_for_idempotent_requests(
    httpx_mock: HTTPXMock, make_client, status
):
    state_url = f"{BASE_URL}/state/user/u1"
    httpx_mock.add_response(url=state_url, status_code=status)
    httpx_mock.add_response(url=state_url, json={})
    await get_state(make_client())
    assert len(httpx_mock.get_requests()) == 2


async def test_400_is_not_retried_and_keeps_field_errors_and_request_id(
    httpx_mock: HTTPXMock, make_client
):
    httpx_mock.add_response(
        url=URL,
        status_code=400,
        json={
            "messages": ["Invalid session key"],
            "request_id": "req-123",
            "field_errors": {"key": "must match [0-9a-zA-Z_-]+"},
        },
    )
    with pytest.raises(InvalidRequestError) as caught:
        await interact(make_client())
    assert len(httpx_mock.get_requests()) == 1
    error = caught.value
    assert error.field_errors == {"key": "must match [0-9a-zA-Z_-]+"}
    assert error.request_id == "req-123"
    text = str(error)
    assert text.startswith("Voiceflow interact failed: HTTP 400")
    assert "Invalid session key" in text
    assert "request_id=req-123" in text
    assert "key: must match" in text


async def test_fastapi_422_detail_becomes_field_errors(httpx_mock: HTTPXMock, make_client):
    httpx_mock.add_response(
        url=URL,
        status_code=422,
        json={"detail": [{"loc": ["body", "avatar_id"], "msg": "field required", "type": "x"}]},
    )
    with pytest.raises(InvalidRequestError) as caught:
        await interact(make_client())
    assert caught.value.field_errors == {"avatar_id": "field required"}


async def test_401_is_not_retried_and_never_echoes_the_key(httpx_mock: HTTPXMock, make_client):
    # A careless server echoes the key it refused; the engine must not pass it on.
    httpx_mock.add_response(
        url=URL,
        status_code=401,
        json={"code": 401, "status": "Unauthorized", "data": f"Invalid key {API_KEY}"},
    )
    with pytest.raises(AuthenticationError) as caught:
        await interact(make_client())
    assert len(httpx_mock.get_requests()) == 1
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)
    assert "Invalid key **********" in str(caught.value)


async def test_404_maps_to_not_found(httpx_mock: HTTPXMock, make_client):
    httpx_mock.add_response(url=URL, status_code=404, json={"id": "s1", "messages": ["nope"]})
    with pytest.raises(NotFoundError, match="server said: nope"):
        await interact(make_client())


async def test_x_should_retry_false_wins_over_a_429(httpx_mock: HTTPXMock, make_client):
    httpx_mock.add_response(
        url=URL, status_code=429, headers={"x-should-retry": "false", "retry-after": "1"}
    )
    with pytest.raises(RateLimitedError):
        await interact(make_client())
    assert len(httpx_mock.get_requests()) == 1


async def test_x_should_retry_true_allows_retrying_a_non_idempotent_500(
    httpx_mock: HTTPXMock, make_client
):
    httpx_mock.add_response(url=URL, status_code=500, headers={"x-should-retry": "true"})
    httpx_mock.add_response(url=URL, json={"traces": []})
    await interact(make_client())
    assert len(httpx_mock.get_requests()) == 2


async def test_headers_carry_the_user_agent_and_the_secret_only_on_the_wire(
    httpx_mock: HTTPXMock, make_client
):
    httpx_mock.add_response(url=URL, json={"traces": []})
    client = make_client()
    await interact(client)
    request = httpx_mock.get_request()
    assert request.headers["user-agent"] == f"prefect-sessions/{__version__}"
    assert request.headers["authorization"] == API_KEY
    assert API_KEY not in repr(client)
    assert API_KEY not in repr(client.__dict__)


async def test_a_request_may_bring_its_own_credential(httpx_mock: HTTPXMock, make_client):
    httpx_mock.add_response(url=URL, json={"traces": []})
    session_key = SecretHeaderAuth("authorization", SecretStr("session-key-abc"))
    async with make_client() as client:
        await client.request(
            "POST", "/v4/interact", operation="interact", idempotent=False, auth=session_key
        )
    assert httpx_mock.get_request().headers["authorization"] == "session-key-abc"


async def test_the_base_url_can_be_overridden(httpx_mock: HTTPXMock, make_client):
    httpx_mock.add_response(url="http://127.0.0.1:8787/v4/interact", json={"traces": []})
    await interact(make_client(base_url="http://127.0.0.1:8787"))


class _CutStream(httpx.AsyncByteStream):
    async def __aiter__(self):
        yield b'event: trace\ndata: {"type": "text"}\n\n'
        raise httpx.ReadError("connection reset by peer")


async def test_a_stream_cut_midway_is_outcome_unknown_for_a_non_idempotent_request(
    httpx_mock: HTTPXMock, make_client
):
    stream_url = f"{BASE_URL}/v4/interact/stream"
    httpx_mock.add_response(url=stream_url, stream=_CutStream())
    received: list[bytes] = []

    async def consume() -> None:
        async with (
            make_client() as client,
            client.stream(
                "POST", "/v4/interact/stream", operation="interact stream", idempotent=False
            ) as response,
        ):
            async for chunk in response.aiter_bytes():
                received.append(chunk)

    with pytest.raises(OutcomeUnknownError, match="stream was cut"):
        await consume()
    assert received == [b'event: trace\ndata: {"type": "text"}\n\n']
    assert len(httpx_mock.get_requests()) == 1


async def test_a_stream_is_retried_until_its_headers_succeed(httpx_mock: HTTPXMock, make_client):
    stream_url = f"{BASE_URL}/v4/interact/stream"
    httpx_mock.add_response(url=stream_url, status_code=429, headers={"retry-after": "0"})
    httpx_mock.add_response(url=stream_url, text="event: end\ndata: {}\n\n")
    async with (
        make_client() as client,
        client.stream(
            "POST", "/v4/interact/stream", operation="interact stream", idempotent=False
        ) as response,
    ):
        body = await response.aread()
    assert body == b"event: end\ndata: {}\n\n"


async def test_the_client_must_be_opened_and_cannot_be_reused(make_client):
    client = make_client()
    with pytest.raises(RuntimeError, match="async with"):
        await client.request("GET", "/x", operation="get", idempotent=True)
    async with client:
        pass
    with pytest.raises(RuntimeError, match="cannot be reused"):
        async with client:
            pass


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("general-runtime.voiceflow.com", "must start with http"),
        ("ftp://example.com", "must start with http"),
        ("https://user:pw@example.com", "must not carry a user name or password"),
    ],
)
def test_a_bad_base_url_is_refused_with_the_field_and_the_fix(make_client, base_url, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        make_client(base_url=base_url)
    assert "base_url" in str(caught.value)
    assert "pw" not in str(caught.value)


def test_errors_survive_pickling_as_prefect_stores_failed_states():
    error = InvalidRequestError(
        provider="Vectara",
        operation="create session",
        status_code=400,
        server_message="bad key",
        request_id="r1",
        field_errors={"key": "invalid"},
    )
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is InvalidRequestError
    assert str(clone) == str(error)
    assert clone.field_errors == {"key": "invalid"}
    assert clone.request_id == "r1"


def test_auth_refuses_plain_strings_and_hides_the_secret():
    with pytest.raises(TypeError, match="SecretStr"):
        SecretHeaderAuth("x-api-key", "plain")  # type: ignore[arg-type]
    auth = SecretHeaderAuth("x-api-key", SecretStr(API_KEY))
    assert API_KEY not in repr(auth)
    assert API_KEY not in repr(vars(auth))


# -- reading answers: one rule for every provider ------------------------------------------------


@pytest.mark.parametrize(
    ("idempotent", "error_class"),
    [(True, ProviderUnavailableError), (False, OutcomeUnknownError)],
)
async def test_an_unreadable_answer_means_what_the_requests_idempotency_says(
    httpx_mock: HTTPXMock, make_client, idempotent: bool, error_class: type
):
    httpx_mock.add_response(url=f"{BASE_URL}/thing", content=b'{"half": ', status_code=200)
    async with make_client() as http:
        with pytest.raises(ProviderError) as caught:
            await http.request_json("POST", "/thing", operation="make thing", idempotent=idempotent)
    assert type(caught.value) is error_class
    # Safe to send again only when the request was idempotent; the turn itself is never resent.
    assert caught.value.retryable is idempotent
    assert "the answer could not be read: invalid JSON" in str(caught.value)
    assert len(httpx_mock.get_requests()) == 1


async def test_read_json_checks_the_shape_asked_for(httpx_mock: HTTPXMock, make_client):
    httpx_mock.add_response(url=f"{BASE_URL}/list", json=[1, 2])
    httpx_mock.add_response(url=f"{BASE_URL}/object", json=[1, 2])
    async with make_client() as http:
        listed = await http.request_json(
            "GET", "/list", operation="list things", idempotent=True, expect=list
        )
        with pytest.raises(ProviderUnavailableError, match="expected a JSON object"):
            await http.request_json(
                "GET", "/object", operation="get thing", idempotent=True, expect=dict
            )
    assert listed == [1, 2]


async def test_the_providers_envelope_reads_its_error_bodies(httpx_mock: HTTPXMock, make_client):
    from prefect_sessions.http.envelope import JsonEnvelope

    body = {"oops": "the agent is asleep", "trace": "t-9"}
    httpx_mock.add_response(url=f"{BASE_URL}/thing", json=body, status_code=400)
    envelope = JsonEnvelope(message_keys=("oops",), request_id_keys=("trace",))
    async with make_client(envelope=envelope) as http:
        with pytest.raises(InvalidRequestError) as caught:
            await http.request("GET", "/thing", operation="get thing", idempotent=True)
    assert caught.value.server_message == "the agent is asleep"
    assert caught.value.request_id == "t-9"
