"""The emulator's Voiceflow runtime over real HTTP: sessions, interact, SSE, state, auth, limits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, run_emulator

API_KEY = "VF.DM.0123456789abcdef01234567.emulator-secret"


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        yield http


def start(client: httpx.Client, user: str = "user-1", key: str = API_KEY) -> str:
    response = client.post(
        "/v4/project/proj-1/session", json={"userID": user}, headers={"authorization": key}
    )
    assert response.status_code == 200, response.text
    session_key: str = response.json()["sessionKey"]
    return session_key


def interact(client: httpx.Client, session_key: str, action: dict[str, object]) -> list[dict]:
    response = client.post(
        "/v4/interact", json={"action": action}, headers={"authorization": session_key}
    )
    assert response.status_code == 200, response.text
    traces: list[dict] = response.json()["traces"]
    return traces


def messages(traces: list[dict]) -> str:
    return " ".join(t["payload"]["message"] for t in traces if t["type"] == "text")


def parse_sse(text: str) -> list[dict[str, str]]:
    frames = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields:
            frames.append(fields)
    return frames


def state_headers(project: str = "proj-1") -> dict[str, str]:
    return {"authorization": API_KEY, "projectID": project}


def test_a_conversation_from_welcome_to_goodbye(client: httpx.Client) -> None:
    session_key = start(client)

    launch = interact(client, session_key, {"type": "launch"})
    assert "Welcome" in messages(launch)
    choice = next(t for t in launch if t["type"] == "choice")
    button = choice["payload"]["buttons"][0]
    assert button["request"]["type"].startswith("path-")
    assert button["request"]["payload"]["label"] == button["name"]

    refund = messages(interact(client, session_key, {"type": "text", "payload": "I need a refund"}))
    assert "refund" in refund
    assert re.search(r"order (number|id)", refund)

    order = interact(client, session_key, {"type": "text", "payload": "It's order 12345"})
    assert "12345" in messages(order)
    assert any(t["type"] == "cardV2" for t in order)

    state = client.get("/state/user/user-1", headers=state_headers()).json()
    assert state["variables"]["topic"] == "refund"
    assert state["variables"]["order_number"] == "12345"

    goodbye = interact(client, session_key, {"type": "text", "payload": "That's all, thanks"})
    assert goodbye[-1]["type"] == "end"


def test_pressing_a_button_sends_its_request_back(client: httpx.Client) -> None:
    session_key = start(client)
    launch = interact(client, session_key, {"type": "launch"})
    buttons = next(t for t in launch if t["type"] == "choice")["payload"]["buttons"]
    refund_button = next(b for b in buttons if "refund" in b["name"].lower())

    traces = interact(client, session_key, refund_button["request"])

    assert re.search(r"order (number|id)", messages(traces))


def test_the_agent_is_deterministic(client: httpx.Client) -> None:
    first = messages(interact(client, start(client, "a"), {"type": "text", "payload": "track"}))
    second = messages(interact(client, start(client, "b"), {"type": "text", "payload": "track"}))
    assert first == second


def test_stream_frames_are_exactly_as_documented(client: httpx.Client) -> None:
    session_key = start(client)
    response = client.post(
        "/v4/interact/stream",
        json={"action": {"type": "launch"}},
        headers={"authorization": session_key},
    )

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.startswith("\n")  # a leading blank line, as the real service may send
    frames = parse_sse(response.text)
    assert [f["event"] for f in frames[:-1]] == ["trace"] * (len(frames) - 1)
    assert frames[-1]["event"] == "end"
    assert frames[-1]["data"] == "{}"
    assert [f["event"] for f in frames].count("end") == 1
    ids = [int(f["id"]) for f in frames]
    assert ids == sorted(ids)
    assert "Welcome" in json.loads(frames[0]["data"])["payload"]["message"]


def test_completion_events_stream_generated_answers_and_keep_fixed_ones_whole(
    client: httpx.Client,
) -> None:
    session_key = start(client)
    interact(client, session_key, {"type": "text", "payload": "I need a refund"})
    response = client.post(
        "/v4/interact/stream",
        json={
            "action": {"type": "text", "payload": "order 98765"},
            "config": {"completionEvents": True},
        },
        headers={"authorization": session_key},
    )
    traces = [json.loads(f["data"]) for f in parse_sse(response.text) if f["event"] == "trace"]
    completion = [t["payload"] for t in traces if t["type"] == "completion"]

    assert completion[0]["state"] == "start"
    assert completion[-1]["state"] == "end"
    # Every piece of the generated message carries the message's ID (the realtime API's schema).
    assert len({piece["messageID"] for piece in completion}) == 1
    pieces = [p["content"] for p in completion if p["state"] == "content"]
    assert len(pieces) > 1
    assert "98765" in "".join(pieces)
    assert not any(t["type"] == "text" for t in traces)  # the only fixed message here is a card

    fixed = client.post(
        "/v4/interact/stream",
        json={"action": {"type": "launch"}, "config": {"completionEvents": True}},
        headers={"authorization": session_key},
    )
    fixed_traces = [json.loads(f["data"]) for f in parse_sse(fixed.text) if f["event"] == "trace"]
    assert fixed_traces[0]["type"] == "text"


def test_variables_in_the_body_are_set_before_the_turn(client: httpx.Client) -> None:
    session_key = start(client)
    response = client.post(
        "/v4/interact",
        json={"action": {"type": "text", "payload": "#A-77"}, "variables": {"topic": "exchange"}},
        headers={"authorization": session_key},
    )
    assert "exchange request" in messages(response.json()["traces"])


def test_interact_takes_only_the_session_key(client: httpx.Client) -> None:
    response = client.post(
        "/v4/interact", json={"action": {"type": "launch"}}, headers={"authorization": API_KEY}
    )
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"code", "status", "dateTime", "timestamp", "data"}
    assert body["code"] == 401


def test_a_new_session_for_the_user_revokes_the_old_key(client: httpx.Client) -> None:
    old = start(client)
    new = start(client)

    refused = client.post(
        "/v4/interact", json={"action": {"type": "launch"}}, headers={"authorization": old}
    )
    assert refused.status_code == 401
    assert "superseded by a newer session" in refused.json()["data"]
    assert interact(client, new, {"type": "launch"})


def test_missing_key_is_refused_in_voiceflows_envelope(client: httpx.Client) -> None:
    response = client.post("/v4/project/p/session", json={"userID": "u"})
    assert response.status_code == 401
    assert response.json()["data"] == "Auth Key Required"


@pytest.mark.parametrize("body", [{}, {"userID": ""}, {"userID": "x" * 257}, {"userID": 5}])
def test_start_session_validates_the_user_id(client: httpx.Client, body: dict) -> None:
    response = client.post("/v4/project/p/session", json=body, headers={"authorization": API_KEY})
    assert response.status_code == 400
    assert "userID" in response.json()["data"]


def test_state_put_patch_delete(client: httpx.Client) -> None:
    new_state = {"stack": [], "storage": {"s": 1}, "variables": {"a": 1, "b": 2}}
    put = client.put("/state/user/u9", json=new_state, headers=state_headers())
    assert put.json() == new_state

    patched = client.patch("/state/user/u9/variables", json={"b": 3}, headers=state_headers())
    assert patched.status_code == 200
    assert patched.json() == {"stack": [], "storage": {"s": 1}, "variables": {"a": 1, "b": 3}}

    other_project = client.get("/state/user/u9", headers=state_headers("proj-2"))
    assert other_project.json() == {}

    deleted = client.delete("/state/user/u9", headers=state_headers())
    assert deleted.status_code == 200
    assert deleted.content == b""
    assert client.get("/state/user/u9", headers=state_headers()).json() == {}


def test_state_needs_the_api_key_and_the_project_header(client: httpx.Client) -> None:
    session_key = start(client)
    with_session_key = client.get(
        "/state/user/user-1", headers={"authorization": session_key, "projectID": "proj-1"}
    )
    assert with_session_key.status_code == 401
    no_project = client.get("/state/user/user-1", headers={"authorization": API_KEY})
    assert no_project.status_code == 400


def test_deleting_state_ends_the_session(client: httpx.Client) -> None:
    session_key = start(client)
    client.delete("/state/user/user-1", headers=state_headers())
    response = client.post(
        "/v4/interact", json={"action": {"type": "launch"}}, headers={"authorization": session_key}
    )
    assert response.status_code == 401


def test_legacy_interact_returns_a_bare_array(client: httpx.Client) -> None:
    response = client.post(
        "/state/user/u2/interact", json={"action": {"type": "launch"}}, headers=state_headers()
    )
    assert isinstance(response.json(), list)
    assert "Welcome" in messages(response.json())


def test_emit_event_answers_201_without_a_body(client: httpx.Client, emulator) -> None:
    response = client.post(
        "/v2/project/proj-1/session/s-1/event",
        json={"action": {"type": "event", "payload": {"event": {"name": "ping"}}}},
        headers={"authorization": API_KEY},
    )
    assert response.status_code == 201
    assert response.content == b""
    # As the vendor: accepted, but delivered only to a session with an open realtime socket,
    # which the emulator never has.
    (recorded,) = [e for e in emulator.state.voiceflow.events if e["sessionID"] == "s-1"]
    assert recorded["delivered"] is False


def test_a_configured_key_list_makes_the_emulator_strict() -> None:
    config = EmulatorConfig(api_keys=frozenset({API_KEY}))
    with run_emulator(config) as emulator, httpx.Client(base_url=emulator.url) as client:
        assert start(client)
        refused = client.post(
            "/v4/project/p/session", json={"userID": "u"}, headers={"authorization": "VF.DM.x.y"}
        )
        assert refused.status_code == 401


def test_fixed_window_per_api_key_across_start_and_interact(
    emulator: EmulatorHandle, client: httpx.Client
) -> None:
    emulator.set_limit("voiceflow", "3/60s")
    session_key = start(client)  # 1
    interact(client, session_key, {"type": "launch"})  # 2
    last = client.get("/state/user/user-1", headers=state_headers())  # 3
    assert last.headers["X-RateLimit-Remaining"] == "0"

    refused = client.post(
        "/v4/interact", json={"action": {"type": "launch"}}, headers={"authorization": session_key}
    )

    assert refused.status_code == 429
    body = refused.json()
    assert set(body) == {"code", "status", "dateTime", "timestamp", "data"}
    assert body["code"] == 429
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    reset_at = datetime.fromisoformat(refused.headers["X-RateLimit-Reset"].replace("Z", "+00:00"))
    assert reset_at.tzinfo is not None
    assert re.fullmatch(r"\d+", refused.headers["Retry-After"])
    assert 0 <= int(refused.headers["Retry-After"]) <= 60
    # Another API key has its own window.
    assert start(client, key="VF.DM.another.key")
    assert emulator.count("rate_limited", key=API_KEY) == 1
    assert emulator.count("rate_limited", route="POST /v4/interact") == 1
    assert emulator.count("requests", key=API_KEY) == 4


def test_every_answer_carries_the_rate_limit_headers(client: httpx.Client) -> None:
    ok = client.post("/v4/project/p/session", json={"userID": "u"}, headers={"authorization": "k"})
    error = client.post("/v4/project/p/session", json={}, headers={"authorization": "k"})
    for response in (ok, error):
        assert response.headers["X-RateLimit-Limit"] == "500"
        assert "X-RateLimit-Reset" in response.headers
    assert (
        int(ok.headers["X-RateLimit-Remaining"]) == int(error.headers["X-RateLimit-Remaining"]) + 1
    )


def test_limits_can_be_switched_off(emulator: EmulatorHandle, client: httpx.Client) -> None:
    emulator.set_limit("voiceflow", "off")
    response = client.post(
        "/v4/project/p/session", json={"userID": "u"}, headers={"authorization": "k"}
    )
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response.headers
