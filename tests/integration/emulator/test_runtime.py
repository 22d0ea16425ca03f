"""Running and steering the emulator: admin, CLI, in process, pytest plugin, config, agent."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from prefect_sessions.emulator import (
    AgentScript,
    EmulatorConfig,
    EmulatorConfigError,
    EmulatorHandle,
    RateLimit,
    create_app,
    run_emulator,
)
from prefect_sessions.emulator.cli import main

API_KEY = "VF.DM.0123456789abcdef01234567.runtime"
START = "/v4/project/proj/session"


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, headers={"authorization": API_KEY}) as http:
        yield http


# -- admin --------------------------------------------------------------------------------------


def test_limits_change_at_run_time(client: httpx.Client) -> None:
    changed = client.put("/_emulator/limits", json={"voiceflow": "1/60s"})
    assert changed.json()["voiceflow"] == "1/60s"
    assert client.post(START, json={"userID": "u"}).status_code == 200
    assert client.post(START, json={"userID": "u"}).status_code == 429
    assert client.get("/_emulator/limits").json()["voiceflow"] == "1/60s"
    assert client.put("/_emulator/limits", json={"voiceflow": "1/potato"}).status_code == 400


def test_counters_per_key_and_route_never_show_the_key(client: httpx.Client) -> None:
    client.put("/_emulator/limits", json={"voiceflow": "1/60s"})
    client.post(START, json={"userID": "u"})
    client.post(START, json={"userID": "u"})
    counters = client.get("/_emulator/counters")
    assert counters.json()["totals"] == {"requests": 2, "rate_limited": 1, "faults": 0}
    row = counters.json()["routes"][0]
    assert row["route"] == "POST /v4/project/{projectID}/session"
    assert row["provider"] == "voiceflow"
    assert API_KEY not in counters.text


def test_queued_faults_and_rates_through_the_admin_api(client: httpx.Client) -> None:
    queued = client.post("/_emulator/faults/next", json={"kind": "error", "route": "/v4/"})
    assert queued.json()["queued"] == [{"kind": "error", "route": "/v4/", "remaining": 1}]
    assert client.post(START, json={"userID": "u"}).status_code == 503
    assert client.post(START, json={"userID": "u"}).status_code == 200
    assert client.put("/_emulator/faults", json={"rates": {"boom": 1}}).status_code == 400
    rates = client.put("/_emulator/faults", json={"rates": {"error": 1.0}, "seed": 3})
    assert rates.json()["rates"] == {"error": 1.0}
    assert client.post(START, json={"userID": "u"}).status_code == 503


def test_reset_forgets_sessions_and_counters(client: httpx.Client) -> None:
    key = client.post(START, json={"userID": "u"}).json()["sessionKey"]
    assert client.post("/_emulator/reset").json() == {"reset": True}
    refused = client.post(
        "/v4/interact", json={"action": {"type": "launch"}}, headers={"authorization": key}
    )
    assert refused.status_code == 401
    assert client.get("/_emulator/counters").json()["totals"]["requests"] == 1


def test_latency_can_be_set_and_answers_still_arrive(client: httpx.Client) -> None:
    set_to = client.put("/_emulator/latency", json={"latency_ms": 5, "jitter_ms": 2})
    assert set_to.json() == {"latency_ms": 5, "jitter_ms": 2}
    assert client.post(START, json={"userID": "u"}).status_code == 200
    per_request = {"X-Emulator-Latency-Ms": "1"}
    assert client.post(START, json={"userID": "u"}, headers=per_request).status_code == 200
    bad = client.post(START, json={"userID": "u"}, headers={"X-Emulator-Latency-Ms": "soon"})
    assert bad.status_code == 400
    assert "X-Emulator-Latency-Ms".lower() in bad.json()["data"]


# -- ways to run it -----------------------------------------------------------------------------


def test_the_cli_serves_on_127_0_0_1_with_real_uvicorn() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect_sessions.emulator",
            "--port",
            "0",
            "--voiceflow-limit",
            "1/60s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split(" on ", 1)[1].split(" ", 1)[0]
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, headers={"authorization": "k"}) as http:
            assert http.post(START, json={"userID": "u"}).status_code == 200
            assert http.post(START, json={"userID": "u"}).status_code == 429
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_cli_explains_a_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--faults", "error=2"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


async def test_in_process_through_asgi_transport() -> None:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        started = await http.post(START, json={"userID": "u"}, headers={"authorization": "k"})
        key = started.json()["sessionKey"]
        reply = await http.post(
            "/v4/interact", json={"action": {"type": "launch"}}, headers={"authorization": key}
        )
    assert "Welcome" in reply.json()["traces"][0]["payload"]["message"]


def test_the_plugin_fixture_is_reset_for_each_test(
    emulator: EmulatorHandle, emulator_server: EmulatorHandle, request: pytest.FixtureRequest
) -> None:
    assert request.config.pluginmanager.hasplugin("prefect_sessions_emulator")
    assert emulator is emulator_server
    assert emulator.count() == 0
    assert emulator.url.startswith("http://127.0.0.1:")


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/1s", RateLimit(20, 1.0)),
        ("500/60s", RateLimit(500, 60.0)),
        ("10/500ms", RateLimit(10, 0.5)),
        ("100/1m", RateLimit(100, 60.0)),
        ("5/s", RateLimit(5, 1.0)),
        ("off", None),
    ],
)
def test_rate_limits_parse(text: str, expected: RateLimit | None) -> None:
    assert RateLimit.parse(text) == expected


@pytest.mark.parametrize("text", ["20", "0/1s", "a/1s", "20/-1s"])
def test_bad_rate_limits_say_how_to_write_them(text: str) -> None:
    with pytest.raises(EmulatorConfigError, match="20/1s"):
        RateLimit.parse(text)


def test_config_checks_faults_and_keys() -> None:
    assert EmulatorConfig.from_options(faults="error=0.1,cut=0.2").faults == {
        "error": 0.1,
        "cut": 0.2,
    }
    with pytest.raises(EmulatorConfigError, match="unknown fault"):
        EmulatorConfig(faults={"lightning": 0.1})
    with pytest.raises(EmulatorConfigError, match="non-empty"):
        EmulatorConfig(api_keys=frozenset({""}))


# -- the scripted agent -------------------------------------------------------------------------

CUSTOM = """
name: Pizza bot
key: agt_pizza
greeting:
  replies:
    - text: "Ciao! Pizza?"
intents:
  - name: order
    patterns: ['(?P<size>small|large) pizza']
    replies:
      - generate: "One {size} pizza coming up."
    set: {size: "{size}"}
    end: true
fallback:
  replies:
    - text: "Only pizza here."
"""


def test_a_custom_agent_answers_on_voiceflow_and_vectara() -> None:
    config = EmulatorConfig(agent=AgentScript.from_yaml(CUSTOM), limits={"voiceflow": None})
    with run_emulator(config) as emulator, httpx.Client(base_url=emulator.url) as http:
        key = http.post(START, json={"userID": "u"}, headers={"authorization": "k"}).json()[
            "sessionKey"
        ]
        traces = http.post(
            "/v4/interact",
            json={"action": {"type": "text", "payload": "a large pizza please"}},
            headers={"authorization": key},
        ).json()["traces"]
        agents = http.get("/v2/agents", headers={"x-api-key": "k"}).json()["agents"]
    assert traces[0]["payload"]["message"] == "One large pizza coming up."
    assert traces[-1]["type"] == "end"
    assert agents[0]["key"] == "agt_pizza"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ngreeting: {}\n", "fallback"),
        ("- just a list", "must be a mapping"),
        (
            "name: x\ngreeting: {replies: [{text: a, generate: b}]}\nfallback: {}\n",
            "exactly one",
        ),
        (
            "name: x\ngreeting: {replies: [{choice: {buttons: [{label: a, intent: nope}]}}]}\n"
            "fallback: {}\n",
            "not defined",
        ),
        ("name: x\ngreeting: {}\nfallback: {}\nintents: [{name: a, patterns: ['(']}]\n", "regular"),
    ],
)
def test_a_bad_agent_script_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AgentScript.from_yaml(text)


def test_the_default_agent_is_deterministic_and_complete() -> None:
    agent = AgentScript.default()
    launch = agent.launch(agent.initial_variables())
    assert "Welcome" in launch.text
    assert any(reply.kind == "choice" for reply in launch.replies)
    refund = agent.respond("I need a refund", {})
    assert refund.variables == {"topic": "refund"}
    assert agent.respond("I need a refund", {}) == refund
    assert agent.respond("bye", {}).ended


def test_every_emulated_route_is_a_module_level_handler() -> None:
    # A handler nested in its router builder cannot be imported or tested alone.
    from fastapi.routing import APIRoute, APIWebSocketRoute

    from prefect_sessions.emulator.providers import emulated_apis

    for api in emulated_apis():
        routes = [
            route
            for router in (*api.routers(), *api.extra_routers())
            for route in router.routes
            if isinstance(route, APIRoute | APIWebSocketRoute)
        ]
        assert routes, api.name
        nested = [route.path for route in routes if "<locals>" in route.endpoint.__qualname__]
        assert nested == [], f"{api.name}: {nested}"
