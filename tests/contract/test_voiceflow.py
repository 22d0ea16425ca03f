"""What the Voiceflow client sends and reads, validated against the vendor's OpenAPI documents.

The current spec (``voiceflow-general-runtime.openapi.json``) has the session routes and DELETE
state; the state, event and legacy interact bodies come from Voiceflow's earlier published spec
(``extra/voiceflow-dm-api-legacy.openapi.json``, see SOURCES.md section 4).
"""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from prefect_sessions.errors import ConfigurationError
from prefect_sessions.voiceflow import (
    EventAction,
    IntentAction,
    LaunchAction,
    State,
    TextAction,
    TurnConfig,
    VoiceflowCredentials,
    VoiceflowSession,
)
from tests.support.openapi import assert_valid, load_spec, request_schema, response_schema

BASE = "https://vf.example.test"
CURRENT = "voiceflow-general-runtime.openapi.json"
LEGACY = "extra/voiceflow-dm-api-legacy.openapi.json"


@pytest.fixture
def credentials() -> VoiceflowCredentials:
    return VoiceflowCredentials(api_key="VF.DM.a.b", project_id="proj", base_url=BASE)


@pytest.mark.parametrize(
    ("environment", "path"),
    [
        ("main", "/v4/project/{projectID}/environment/{environmentID}/session"),
        (None, "/v4/project/{projectID}/session"),
    ],
)
async def test_start_session_request_and_response_match_the_spec(
    httpx_mock, credentials, environment, path
):
    spec = load_spec(CURRENT)
    answer = {"sessionKey": "sk-123"}
    assert_valid(spec, response_schema(spec, "post", path, "200"), answer)
    concrete = path.replace("{projectID}", "proj").replace("{environmentID}", "main")
    httpx_mock.add_response(url=BASE + concrete, json=answer)
    creds = credentials.model_copy(update={"environment": environment})
    async with creds.get_client() as client:
        session = await client.start_session("u" * 256)
    sent = json.loads(httpx_mock.get_request().content)
    assert_valid(spec, request_schema(spec, "post", path), sent)
    assert session.session_key.get_secret_value() == "sk-123"
    security = spec["components"]["securitySchemes"]["auth"]
    assert httpx_mock.get_request().headers[security["name"]] == "VF.DM.a.b"


async def test_delete_state_sends_the_documented_project_header(httpx_mock, credentials):
    spec = load_spec(CURRENT)
    operation = spec["paths"]["/state/user/{userID}"]["delete"]
    required_headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    httpx_mock.add_response(method="DELETE", url=f"{BASE}/state/user/ada")
    async with credentials.get_client() as client:
        await client.delete_state("ada")
    sent = httpx_mock.get_request().headers
    assert required_headers == {"projectID"}
    assert all(sent[name] == "proj" for name in required_headers)  # httpx.Headers ignore case
    user_id = next(p for p in operation["parameters"] if p["name"] == "userID")
    async with credentials.get_client() as client:
        with pytest.raises(ConfigurationError, match="1 to 128 characters"):
            await client.delete_state("u" * (user_id["schema"]["maxLength"] + 1))
    assert len(httpx_mock.get_requests()) == 1


async def test_state_bodies_match_the_state_schema(httpx_mock, credentials):
    spec = load_spec(LEGACY)
    state_schema = spec["components"]["schemas"]["State"]
    # The vendor's own example, round-tripped through our model, still matches the schema.
    example = state_schema["x-examples"]["Example State"]
    assert_valid(spec, state_schema, example)
    httpx_mock.add_response(method="PUT", url=f"{BASE}/state/user/ada", json=example)
    async with credentials.get_client() as client:
        got = await client.update_state("ada", State.model_validate(example))
    assert_valid(spec, state_schema, json.loads(httpx_mock.get_request().content))
    assert_valid(spec, state_schema, got.to_wire())


async def test_event_and_legacy_interact_bodies_match_the_spec(httpx_mock, credentials):
    spec = load_spec(LEGACY)
    httpx_mock.add_response(url=f"{BASE}/v2/project/proj/session/s1/event", status_code=201)
    httpx_mock.add_response(url=f"{BASE}/state/user/ada/interact", json=[], is_reusable=True)
    actions = [
        LaunchAction(),
        TextAction(payload="hello"),
        IntentAction.named("order_status", query="where is it"),
    ]
    async with credentials.get_client() as client:
        await client.emit_session_event("s1", EventAction.named("paid"))
        for action in actions:
            await client.legacy_interact(
                "ada",
                action,
                config=TurnConfig(tts=False, strip_ssml=True, exclude_types=["debug"]),
            )
    event, *turns = httpx_mock.get_requests()
    event_body = request_schema(spec, "post", "/v2/project/{projectID}/session/{sessionID}/event")
    assert_valid(spec, event_body, json.loads(event.content))
    schemas = spec["components"]["schemas"]
    for request in turns:
        sent = json.loads(request.content)
        # The legacy body names the field `request` in `required` but declares it as `action`
        # (SOURCES.md): validate the action and config against their own schemas.
        assert_valid(spec, schemas["Request"], sent["action"])
        assert_valid(spec, schemas["Config"], sent["config"])


async def test_v4_interact_body_has_the_documented_shape(httpx_mock, credentials):
    # /v4/interact is described in reference/providers.md (its spec block was truncated).
    httpx_mock.add_response(url=f"{BASE}/v4/interact", json={"traces": []})
    session = VoiceflowSession(user_id="u", session_key=SecretStr("k"), project_id="proj")
    async with credentials.get_client() as client:
        await client.interact(
            session,
            TextAction(payload="hi"),
            variables={"x": 1},
            config=TurnConfig(completion_events=True),
        )
    sent = json.loads(httpx_mock.get_request().content)
    assert set(sent) == {"action", "variables", "config"}
    assert sent["action"] == {"type": "text", "payload": "hi"}
    assert sent["config"] == {"completionEvents": True}
