"""The provider seam, proved: a fourth provider defined here, in the tests, runs a suite through
``prefect-sessions run`` (the CLI's code path, a real Prefect server, real HTTP on 127.0.0.1)
without a line of the package knowing about it."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import Field, SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from prefect_sessions import providers
from prefect_sessions.cli import main
from prefect_sessions.conversation.results import ResultStore
from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.http import HttpClient, SecretHeaderAuth
from prefect_sessions.http.envelope import JsonEnvelope
from prefect_sessions.seam import (
    ClientAdapter,
    ConnectionSettings,
    Provider,
    Reply,
    Turn,
    resolve_credentials,
)
from tests.support.fixed_window import serve

pytestmark = pytest.mark.usefixtures("prefect_server")

API_KEY = "CANARY-echo-key-7d1e"


# -- the provider: credentials, client, adapter, registry entry -----------------------------------


class EchoCredentials(ProviderCredentials):
    """An agent that answers every message with the message, shouted."""

    _block_type_name = "Echo Test Credentials"
    provider_name: ClassVar[str] = "Echo"
    envelope: ClassVar[JsonEnvelope] = JsonEnvelope(message_keys=("problem",))

    base_url: str = "http://127.0.0.1:9"
    api_key: SecretStr = Field(default=...)

    def get_client(self) -> EchoClient:
        return EchoClient(self.http_client(SecretHeaderAuth("x-echo-key", self.api_key)))


class EchoClient:
    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def __aenter__(self) -> EchoClient:
        await self.http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.__aexit__(*exc_info)

    async def say(self, conversation: str, text: str) -> str:
        answer = await self.http.request_json(
            "POST", "/say", operation="say", idempotent=False, json={"c": conversation, "t": text}
        )
        return str(answer["reply"])


@dataclass
class _Handle:
    conversation: str


class EchoAdapter(ClientAdapter[EchoClient]):
    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)

    async def open_client(self) -> EchoClient:
        def inline(options: dict[str, Any]) -> EchoCredentials:
            assert self.settings.api_key is not None
            return EchoCredentials(api_key=self.settings.api_key, **options)

        return (await resolve_credentials(self.settings, EchoCredentials, inline)).get_client()

    async def start(self, conversation_id: str, variables: Mapping[str, Any]) -> _Handle:
        return _Handle(conversation_id)

    async def turn(self, handle: _Handle, turn: Turn) -> Reply:
        return Reply(messages=[await self.client.say(handle.conversation, str(turn.value))])

    async def variables(self, handle: _Handle) -> dict[str, Any]:
        return {}

    async def end(self, handle: _Handle) -> None:
        return None


ECHO = Provider(
    name="echo",
    credentials=EchoCredentials,
    adapter=EchoAdapter,
    turn_kinds=frozenset({"text"}),
)


# -- its server -----------------------------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    heard: list[dict[str, Any]] = []

    async def say(request: Request) -> JSONResponse:
        if request.headers.get("x-echo-key") != API_KEY:
            return JSONResponse({"problem": "who are you?"}, status_code=401)
        body = json.loads(await request.body())
        heard.append(body)
        return JSONResponse({"reply": str(body["t"]).upper()})

    with serve(Starlette(routes=[Route("/say", say, methods=["POST"])])) as url:
        yield url, heard


@pytest.fixture
def echo_registered() -> Iterator[None]:
    providers.register(ECHO)
    yield
    providers.unregister(ECHO.name)


def _suite(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "echo.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: echo-suite
            provider: echo
            connection: {{base_url: "{url}", api_key_env: ECHO_TEST_KEY}}
            concurrency: 2
            conversations:
              - id: hello
                turns:
                  - text: hello there
                    expect: [{{contains: HELLO THERE}}]
              - id: refund
                turns:
                  - text: a refund please
                    expect: [{{contains: REFUND}}]
                  - text: thanks
                    expect: [{{contains: nope}}]
            """
        ),
        encoding="utf-8",
    )
    return path


@pytest.mark.usefixtures("echo_registered")
def test_a_provider_defined_outside_the_package_runs_a_suite_through_the_cli(
    tmp_path: Path, echo_server: tuple[str, list[dict[str, Any]]], monkeypatch, capsys
) -> None:
    url, heard = echo_server
    monkeypatch.setenv("ECHO_TEST_KEY", API_KEY)
    suite = _suite(tmp_path, url)
    assert "echo" in providers.names()
    assert main(["validate", str(suite)]) == 0
    assert "2 conversations against echo" in capsys.readouterr().out

    code = main(["run", str(suite), "--results-dir", str(tmp_path), "--run-key", "k"])

    assert code == 1  # one expectation fails on purpose: verdicts come from the real answers
    results = {r.id: r for r in ResultStore(next(tmp_path.rglob("k*.jsonl")))}
    assert (results["hello"].status, results["refund"].status) == ("passed", "failed")
    assert [h["t"] for h in heard if h["c"] == "refund"] == ["a refund please", "thanks"]
    assert API_KEY not in capsys.readouterr().err


@pytest.mark.usefixtures("echo_registered")
def test_a_suite_asking_what_the_fourth_provider_cannot_do_is_refused(tmp_path, capsys) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text(
        "name: bad\nprovider: echo\nconnection: {api_key_env: ECHO_TEST_KEY, agent_key: x}\n"
        "conversations: [{id: a, turns: [{launch: {}}]}]\n",
        encoding="utf-8",
    )
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "launch" in err
    assert "unknown field 'agent_key' for echo" in err


def test_the_provider_envelope_reads_its_error_bodies() -> None:
    response = httpx.Response(401, json={"problem": "who are you?", "request_id": "r-1"})
    body = EchoCredentials.envelope.read_error(response)
    assert (body.message, body.request_id) == ("who are you?", "r-1")
