"""The emulator's Vectara Agents API over real HTTP: agents, sessions, events, SSE, errors, 429."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from prefect_sessions.emulator import EmulatorHandle

AGENT = "agt_acme_support"


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, headers={"x-api-key": "zqt_key"}) as http:
        yield http


def new_session(client: httpx.Client, **body: object) -> str:
    response = client.post(f"/v2/agents/{AGENT}/sessions", json={"name": "support chat", **body})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def send(client: httpx.Client, session: str, text: str, **extra: object) -> httpx.Response:
    return client.post(
        f"/v2/agents/{AGENT}/sessions/{session}/events",
        json={"type": "input_message", "messages": [{"type": "text", "content": text}], **extra},
    )


def test_the_scripted_agent_is_listed_and_readable(client: httpx.Client) -> None:
    agents = client.get("/v2/agents").json()
    assert [a["key"] for a in agents["agents"]] == [AGENT]
    agent = client.get(f"/v2/agents/{AGENT}").json()
    assert agent["name"] == "Acme Support"
    assert agent["enabled"] is True


def test_a_session_lifecycle(client: httpx.Client) -> None:
    session = new_session(client, metadata={"customer": "ada"}, tti_minutes=5)
    assert session.startswith("ase_")

    fetched = client.get(f"/v2/agents/{AGENT}/sessions/{session}").json()
    assert fetched["metadata"] == {"customer": "ada"}
    assert fetched["agent_key"] == AGENT

    patched = client.patch(f"/v2/agents/{AGENT}/sessions/{session}", json={"enabled": False})
    assert patched.json()["enabled"] is False
    disabled = send(client, session, "hello")
    assert disabled.status_code == 400

    deleted = client.delete(f"/v2/agents/{AGENT}/sessions/{session}")
    assert deleted.status_code == 204
    missing = client.get(f"/v2/agents/{AGENT}/sessions/{session}")
    assert missing.status_code == 404
    assert missing.json()["id"] == session
    assert "request_id" in missing.json()


def test_input_gets_the_agents_answer_as_events(client: httpx.Client) -> None:
    session = new_session(client)
    response = send(client, session, "I need a refund")

    assert response.status_code == 201
    body = response.json()
    assert body["session_key"] == session
    kinds = [event["type"] for event in body["events"]]
    assert kinds == ["input_message", "agent_output"]
    answer = body["events"][1]["content"]
    assert "refund" in answer
    assert re.search(r"order (number|id)", answer)
    assert all(event["id"].startswith("aev_") for event in body["events"])

    listed = client.get(f"/v2/agents/{AGENT}/sessions/{session}/events").json()["events"]
    assert [e["id"] for e in listed] == [e["id"] for e in body["events"]]
    one = client.get(f"/v2/agents/{AGENT}/sessions/{session}/events/{listed[1]['id']}")
    assert one.json()["content"] == answer


def test_the_session_remembers_variables_between_inputs(client: httpx.Client) -> None:
    session = new_session(client)
    send(client, session, "I need a refund")
    answer = send(client, session, "order 424242").json()["events"][1]["content"]
    assert "refund request" in answer


def test_streaming_sends_data_only_frames_ending_with_end(client: httpx.Client) -> None:
    session = new_session(client)
    response = send(client, session, "where is my order", stream_response=True)

    assert response.status_code == 201
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [block for block in response.text.split("\n\n") if block]
    assert all(frame.startswith("data: ") and "\n" not in frame for frame in frames)
    events = [json.loads(frame.removeprefix("data: ")) for frame in frames]
    assert events[-1] == {"type": "end"}
    # As the vendor's stream today: the input's echo first, then the answer's pieces and their
    # end, then how much of the context window the call used.
    assert events[0]["type"] == "input_message"
    assert events[0]["messages"] == [{"type": "text", "content": "where is my order"}]
    assert events[-3]["type"] == "streaming_agent_output_end"
    assert events[-2]["type"] == "context_consumed"
    assert events[-2]["session_context_usage"]["total_tokens"] > 0
    pieces = [e["content"] for e in events if e["type"] == "streaming_agent_output"]
    assert len(pieces) > 1
    assert "order number" in "".join(pieces)


def test_sessions_page_with_a_cursor(client: httpx.Client) -> None:
    keys = {new_session(client, name=f"chat {i}") for i in range(3)}
    first = client.get(f"/v2/agents/{AGENT}/sessions", params={"limit": 2}).json()
    assert len(first["sessions"]) == 2
    second = client.get(
        f"/v2/agents/{AGENT}/sessions",
        params={"limit": 2, "page_key": first["metadata"]["page_key"]},
    ).json()
    assert "page_key" not in second["metadata"]
    assert {s["key"] for s in first["sessions"] + second["sessions"]} == keys


def test_bad_input_gets_field_errors(client: httpx.Client) -> None:
    session = new_session(client)
    response = client.post(f"/v2/agents/{AGENT}/sessions/{session}/events", json={"messages": []})
    assert response.status_code == 400
    assert "messages" in response.json()["field_errors"]


def test_the_api_key_is_required(emulator: EmulatorHandle) -> None:
    response = httpx.get(f"{emulator.url}/v2/agents")
    assert response.status_code == 401
    assert response.json()["messages"]


def test_unknown_agent_is_agent_not_found(client: httpx.Client) -> None:
    response = client.post("/v2/agents/agt_missing/sessions", json={"name": "x"})
    assert response.status_code == 404
    assert "agent_not_found" in response.json()["messages"][0]


def test_agents_can_be_created_updated_and_deleted(client: httpx.Client) -> None:
    body = {
        "name": "Billing",
        "tool_configurations": {},
        "model": {"name": "gpt-4o"},
        "first_step": {
            "type": "conversational",
            "instructions": [],
            "output_parser": {"type": "default"},
        },
    }
    created = client.post("/v2/agents", json=body)
    assert created.status_code == 201
    key = created.json()["key"]
    updated = client.patch(f"/v2/agents/{key}", json={"enabled": False}).json()
    assert updated["enabled"] is False
    assert client.get("/v2/agents", params={"enabled": "false"}).json()["agents"][0]["key"] == key
    assert client.delete(f"/v2/agents/{key}").status_code == 204
    assert client.get(f"/v2/agents/{key}").status_code == 404


AGENT_BODY = {
    "name": "Billing",
    "tool_configurations": {},
    "model": {"name": "gpt-4o"},
    "first_step": {"type": "conversational", "instructions": []},
}


@pytest.mark.parametrize(
    ("tools", "field"),
    [
        ({"kb": {"type": "corpora_search"}}, "tool_configurations.kb.query_configuration"),
        ({"kb": {"type": "telepathy"}}, "tool_configurations.kb.type"),
        ({"kb": "search"}, "tool_configurations.kb"),
        ({"notify": {"type": "client"}}, "tool_configurations.notify.tool_id"),
    ],
)
def test_a_tool_configuration_no_schema_allows_is_refused(
    client: httpx.Client, tools: dict[str, object], field: str
) -> None:
    refused = client.post("/v2/agents", json={**AGENT_BODY, "tool_configurations": tools})
    assert refused.status_code == 400
    assert field in refused.json()["field_errors"]


def test_an_agent_stores_only_documented_fields(client: httpx.Client) -> None:
    tools = {"web": {"type": "web_search", "argument_override": {"limit": 5}}}
    body = {**AGENT_BODY, "tool_configurations": tools, "mood": "cheerful", "": [{}]}
    agent = client.post("/v2/agents", json=body).json()
    assert agent["tool_configurations"] == tools
    assert "mood" not in agent
    assert "" not in agent
    patched = client.patch(f"/v2/agents/{agent['key']}", json={"mood": "grumpy"}).json()
    assert "mood" not in patched


def test_an_agent_of_named_steps_starts_at_its_first_step_name(client: httpx.Client) -> None:
    steps = {"triage": {"type": "conversational", "instructions": []}}
    body = {**AGENT_BODY, "steps": steps, "first_step_name": "triage"}
    del body["first_step"]
    agent = client.post("/v2/agents", json=body).json()
    assert agent["first_step"]["name"] == "triage"
    wrong = client.post("/v2/agents", json={**body, "first_step_name": "billing"})
    assert wrong.status_code == 400
    assert "first_step_name" in wrong.json()["field_errors"]
    del body["first_step_name"]
    neither = client.post("/v2/agents", json=body)
    assert "first_step" in neither.json()["field_errors"]


def test_events_can_be_hidden_unhidden_and_deleted(client: httpx.Client) -> None:
    session = new_session(client)
    asked, answered = send(client, session, "I need a refund").json()["events"]
    events = f"/v2/agents/{AGENT}/sessions/{session}/events"

    def listed(**params: str) -> list[str]:
        return [e["id"] for e in client.get(events, params=params).json()["events"]]

    assert client.post(f"{events}/{asked['id']}/hide").json()["id"] == asked["id"]
    assert listed() == [answered["id"]]
    assert listed(include_hidden="true") == [asked["id"], answered["id"]]
    assert client.post(f"{events}/{asked['id']}/unhide").status_code == 200
    assert listed() == [asked["id"], answered["id"]]
    assert client.delete(f"{events}/{answered['id']}").status_code == 204
    assert listed(include_hidden="true") == [asked["id"]]
    assert client.delete(f"{events}/{answered['id']}").status_code == 404
    outstanding = client.get(f"/v2/agents/{AGENT}/sessions/{session}/outstanding_client_tool_calls")
    assert outstanding.json() == {"client_tool_calls": []}


def test_sessions_are_listed_by_a_metadata_expression(client: httpx.Client) -> None:
    premium = new_session(client, metadata={"tier": 3, "region": "us"})
    new_session(client, metadata={"tier": 1, "region": "us"})
    sessions = f"/v2/agents/{AGENT}/sessions"
    found = client.get(sessions, params={"metadata_filter": "tier >= 2 AND region = 'us'"})
    assert [s["key"] for s in found.json()["sessions"]] == [premium]
    garbled = client.get(sessions, params={"metadata_filter": "tier >"})
    assert garbled.status_code == 400
    assert "expected a value" in garbled.json()["field_errors"]["metadata_filter"]


def test_rate_limit_exceeded(emulator: EmulatorHandle, client: httpx.Client) -> None:
    # A window that answers with Retry-After (the default is a bare 429 past 5 in flight,
    # tests/integration/emulator/test_limits.py).
    emulator.set_limit("vectara", "2/60s publish=retry-after")
    client.get("/v2/agents")
    client.get("/v2/agents")
    refused = client.get("/v2/agents")
    assert refused.status_code == 429
    assert "rate_limit_exceeded" in refused.json()["messages"][0]
    assert int(refused.headers["Retry-After"]) >= 1
    assert emulator.count("rate_limited", route="GET /v2/agents") == 1
