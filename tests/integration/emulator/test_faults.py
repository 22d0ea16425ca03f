"""Faults on demand over real HTTP (and in process), and what the engine makes of them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, create_app, run_emulator
from prefect_sessions.errors import OutcomeUnknownError
from prefect_sessions.http import HttpClient, RetryPolicy, SecretHeaderAuth

API_KEY = "VF.DM.0123456789abcdef01234567.faults"
START = "/v4/project/proj/session"


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, headers={"authorization": API_KEY}) as http:
        yield http


def session_key(client: httpx.Client) -> str:
    key: str = client.post(START, json={"userID": "u"}).json()["sessionKey"]
    return key


def fault(kind: str) -> dict[str, str]:
    return {"X-Emulator-Fault": kind}


def test_error_fault_answers_5xx_in_the_providers_envelope(
    emulator: EmulatorHandle, client: httpx.Client
) -> None:
    response = client.post(START, json={"userID": "u"}, headers=fault("error"))
    assert response.status_code == 503
    assert set(response.json()) == {"code", "status", "dateTime", "timestamp", "data"}
    assert emulator.count("faults", route="POST /v4/project/{projectID}/session") == 1


def test_reset_fault_resets_the_connection(client: httpx.Client) -> None:
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.post(START, json={"userID": "u"}, headers=fault("reset"))


def test_slow_fault_outlasts_the_clients_timeout(emulator: EmulatorHandle) -> None:
    with (
        httpx.Client(base_url=emulator.url, timeout=0.2) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post(START, json={"userID": "u"}, headers={**fault("slow"), "authorization": "k"})


def test_cut_fault_drops_a_stream_before_its_end(client: httpx.Client) -> None:
    key = session_key(client)
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream(
            "POST",
            "/v4/interact/stream",
            json={"action": {"type": "launch"}},
            headers={"authorization": key, **fault("cut")},
        ) as response,
    ):
        received.extend(response.iter_lines())
    assert any(line.startswith("event: trace") for line in received)
    assert "event: end" not in received


def test_cut_fault_truncates_a_json_body(client: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(START, json={"userID": "u"}, headers=fault("cut"))


def test_malformed_fault_sends_json_that_does_not_parse(client: httpx.Client) -> None:
    response = client.post(START, json={"userID": "u"}, headers=fault("malformed"))
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()

    stream = client.post(
        "/v4/interact/stream",
        json={"action": {"type": "launch"}},
        headers={"authorization": session_key(client), **fault("malformed")},
    )
    data = [line[6:] for line in stream.text.splitlines() if line.startswith("data: ")]
    with pytest.raises(json.JSONDecodeError):
        json.loads(data[0])
    assert data[-1] == "{}"  # the rest of the stream is intact, end frame included


def test_an_unknown_fault_name_is_a_clear_400(client: httpx.Client) -> None:
    response = client.post(START, json={"userID": "u"}, headers=fault("explode"))
    assert response.status_code == 400
    assert "explode" in response.json()["data"]


def test_queued_faults_hit_only_their_route_and_count(
    emulator: EmulatorHandle, client: httpx.Client
) -> None:
    emulator.queue_fault("error", count=2, route="/state/")
    assert client.post(START, json={"userID": "u"}).status_code == 200
    headers = {"projectID": "proj"}
    statuses = [client.get("/state/user/u", headers=headers).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert emulator.count("faults") == 2


def test_seeded_rates_repeat_exactly() -> None:
    config = EmulatorConfig(faults={"error": 0.4}, seed=7, limits={"voiceflow": None})

    def run() -> list[int]:
        with run_emulator(config) as emulator, httpx.Client(base_url=emulator.url) as http:
            return [
                http.post(START, json={"userID": "u"}, headers={"authorization": "k"}).status_code
                for _ in range(20)
            ]

    first, second = run(), run()
    assert first == second
    assert {200, 503} <= set(first)


async def test_the_engine_retries_an_idempotent_request_after_a_reset(
    emulator: EmulatorHandle,
) -> None:
    async def no_wait(_: float) -> None:
        return None

    emulator.queue_fault("reset", route="/state/")
    auth = SecretHeaderAuth("authorization", SecretStr(API_KEY))
    async with HttpClient(
        provider="Voiceflow", base_url=emulator.url, auth=auth, retry=RetryPolicy(), sleep=no_wait
    ) as http:
        response = await http.request(
            "GET",
            "/state/user/u",
            operation="get state",
            idempotent=True,
            headers={"projectID": "proj"},
        )
    assert response.status_code == 200
    assert emulator.count("faults", route="GET /state/user/{userID}") == 1
    assert emulator.count("requests", route="GET /state/user/{userID}") == 2


async def test_the_engine_reports_a_cut_interact_stream_as_outcome_unknown(
    emulator: EmulatorHandle, client: httpx.Client
) -> None:
    key = session_key(client)
    emulator.queue_fault("cut", route="/v4/interact/stream")
    auth = SecretHeaderAuth("authorization", SecretStr(key))

    async def read_the_stream(http: HttpClient) -> None:
        async with http.stream(
            "POST",
            "/v4/interact/stream",
            operation="interact",
            idempotent=False,
            json={"action": {"type": "launch"}},
        ) as response:
            async for _ in response.aiter_lines():
                pass

    async with HttpClient(provider="Voiceflow", base_url=emulator.url, auth=auth) as http:
        with pytest.raises(OutcomeUnknownError):
            await read_the_stream(http)


async def test_in_process_faults_raise_transport_errors() -> None:
    app = create_app(EmulatorConfig(limits={"voiceflow": None}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        ok = await http.post(START, json={"userID": "u"}, headers={"authorization": "k"})
        assert ok.status_code == 200
        with pytest.raises(httpx.ReadError):
            await http.post(
                START, json={"userID": "u"}, headers={"authorization": "k", **fault("reset")}
            )
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(
                START, json={"userID": "u"}, headers={"authorization": "k", **fault("cut")}
            )
