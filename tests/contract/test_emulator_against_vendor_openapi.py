"""Contract tests: schemathesis runs the vendors' OpenAPI documents against the emulator over HTTP.

Every documented operation gets generated requests (bounded, seeded) and each answer must pass
schemathesis' status-code, content-type and response-schema conformance checks.

Where a vendor document contradicts itself, or the documented behaviour needs a status the
document does not list, the exception is in ``SPEC_EXCEPTIONS`` below: the one place that says what
is relaxed and why. Nothing else is.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, seed, settings

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, run_emulator

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"
#: Documents kept with the tests (see its SOURCES.md): these run on a clone on its own.
KEPT = Path(__file__).resolve().parent / "vendor_documents"
CURRENT_VECTARA = "vectara-agents-2026-07.openapi.yaml"
MAX_EXAMPLES = 25
API_KEY = "VF.DM.0123456789abcdef01234567.contract"
DEFAULT_AGENT = "agt_acme_support"
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass(frozen=True)
class SpecException:
    """One documented departure from a vendor document, with the reason."""

    document: str
    what: str
    reason: str
    patch: Callable[[dict[str, Any]], None] | None = None
    # (method, path template) -> statuses the documented behaviour answers with but the
    # document does not list; such answers are checked for the vendor's error envelope instead.
    extra_statuses: tuple[tuple[str, str, int], ...] = ()


def _discriminated_one_of_as_any_of(doc: dict[str, Any]) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "discriminator" in node and "oneOf" in node:
                node["anyOf"] = node.pop("oneOf")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)


def _agent_session_requires_key(doc: dict[str, Any]) -> None:
    schema = doc["components"]["schemas"]["AgentSession"]
    schema["required"] = ["key" if name == "id" else name for name in schema["required"]]


_LIVEAVATAR_SESSION_OPS = (
    ("GET", "/v1/sessions/{session_id}"),
    ("GET", "/v1/sessions/{session_id}/transcript"),
    ("DELETE", "/v1/sessions/{session_id}/events"),
    ("POST", "/v1/sessions/stop"),
    ("POST", "/v1/sessions/keep-alive"),
)

SPEC_EXCEPTIONS: tuple[SpecException, ...] = (
    SpecException(
        "vectara-agents.openapi.yaml",
        "`AgentSession.required` lists `id`; validated with `key` instead.",
        "The schema has no `id` property: its identifier is `key` (SOURCES.md section 3), so "
        "every real session object would fail.",
        _agent_session_requires_key,
    ),
    SpecException(
        "vectara-agents.openapi.yaml",
        "`oneOf` with a `discriminator` is validated as `anyOf`.",
        "The variants (tool configurations, instructions, rerankers, stream events such as "
        "`StreamError`/`StreamResponseEnd`) do not require their discriminator `type` and allow "
        "extra properties, so one value matches several variants and plain JSON-Schema `oneOf` "
        "rejects correct bodies; the discriminator is what selects the variant (SOURCES.md).",
        _discriminated_one_of_as_any_of,
    ),
    SpecException(
        CURRENT_VECTARA,
        "`oneOf` with a `discriminator` is validated as `anyOf`.",
        "As in the January document: variants do not require their discriminator and allow "
        "extra properties, so one body matches several of them.",
        _discriminated_one_of_as_any_of,
    ),
    SpecException(
        CURRENT_VECTARA,
        "400 from the session list for a `metadata_filter` that does not parse.",
        "The parameter is documented as a SQL-WHERE-like expression; one that does not parse "
        "cannot be answered with a list, and the operation lists only 200, 403 and 404.",
        extra_statuses=(("GET", "/v2/agents/{agent_key}/sessions", 400),),
    ),
    SpecException(
        "voiceflow-general-runtime.openapi.json",
        "404 from a session start for an environment the project does not have.",
        "The v4 document lists only the success; the runtime's stream documents 404 for an "
        "environment that is missing or not published (providers.md section 1.4), and a project "
        "made before environments has no 'main' (issue 16).",
        extra_statuses=(
            ("POST", "/v4/project/{projectID}/environment/{environmentID}/session", 404),
        ),
    ),
    SpecException(
        "liveavatar.openapi.json",
        "404 for a session ID that does not exist (or belongs to another API key).",
        "The document lists only 200 and 422, which cannot answer a lookup of an unknown ID.",
        extra_statuses=tuple((m, p, 404) for m, p in _LIVEAVATAR_SESSION_OPS),
    ),
    SpecException(
        "liveavatar.openapi.json",
        "400 from stop and keep-alive when an API key is used without `session_id`, and from "
        "keep-alive of a session that is not active.",
        "The reference text says `session_id` is required with an API key, which the schema "
        "cannot express (SOURCES.md section 2); keeping an ended session alive cannot succeed.",
        extra_statuses=(
            ("POST", "/v1/sessions/stop", 400),
            ("POST", "/v1/sessions/keep-alive", 400),
        ),
    ),
    SpecException(
        "liveavatar.openapi.json",
        "400 from the token endpoint for a sandbox session with another avatar than Wayne.",
        "The sandbox documentation allows only avatar dd73ea75-1218-4ef3-92ce-606d5f7fbc0a; "
        "the token operation lists only 200 and 422.",
        extra_statuses=(("POST", "/v1/sessions/token", 400),),
    ),
)


def _load(path: Path) -> Any:
    text = path.read_text()
    doc = yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
    doc = copy.deepcopy(doc)
    for exception in SPEC_EXCEPTIONS:
        if exception.document == path.name and exception.patch is not None:
            exception.patch(doc)
    return schemathesis.openapi.from_dict(doc)


#: (provider, document): the vendors' documents in ../shared and the one kept with the tests.
DOCUMENTS = [
    ("voiceflow", SPECS / "voiceflow-general-runtime.openapi.json"),
    ("vectara", SPECS / "vectara-agents.openapi.yaml"),
    ("vectara", KEPT / CURRENT_VECTARA),
    ("liveavatar", SPECS / "liveavatar.openapi.json"),
]


def _operations() -> Iterator[Any]:
    for provider, path in DOCUMENTS:
        if not path.exists():
            reason = f"vendor document {path} not present"
            yield pytest.param(provider, None, id=path.name, marks=pytest.mark.skip(reason=reason))
            continue
        for result in _load(path).get_all_operations():
            operation = result.ok()
            name = f"{path.stem} {operation.method.upper()} {operation.path}"
            yield pytest.param(provider, operation, id=name)


EXTRA_STATUSES = {
    (method, path, status)
    for exception in SPEC_EXCEPTIONS
    for method, path, status in exception.extra_statuses
}
OPERATIONS = list(_operations())


@pytest.fixture(scope="module")
def contract_emulator() -> Iterator[EmulatorHandle]:
    # Rate limits are exercised elsewhere; here they would only add undocumented 429s. The
    # scripted agent answers at once: the answers' shapes are checked here, not their timing.
    config = EmulatorConfig(
        limits={"voiceflow": None, "liveavatar": None, "vectara": None}, vectara_think_ms=0
    )
    with run_emulator(config) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def http(contract_emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    """Sets up the live objects a generated request may point at."""
    headers = {"x-api-key": API_KEY}
    with httpx.Client(base_url=contract_emulator.url, headers=headers) as client:
        yield client


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One connection pool for the generated requests (schemathesis sends with requests)."""
    with requests.Session() as pool:
        yield pool


def _keep_random(value: Any) -> bool:
    """A third of generated IDs are kept (to exercise 404s); the rest point at live objects."""
    return len(str(value)) % 3 == 0


def _prepare_vectara(case: Any, http: httpx.Client) -> dict[str, str]:
    session = http.post(f"/v2/agents/{DEFAULT_AGENT}/sessions", json={"name": "contract"}).json()
    events = http.post(
        f"/v2/agents/{DEFAULT_AGENT}/sessions/{session['key']}/events",
        json={"messages": [{"type": "text", "content": "I need a refund"}]},
    ).json()["events"]
    live = {"agent_key": DEFAULT_AGENT, "session_key": session["key"], "event_id": events[0]["id"]}
    for name, value in live.items():
        if name in (case.path_parameters or {}) and not _keep_random(case.path_parameters[name]):
            case.path_parameters[name] = value
    return {"x-api-key": API_KEY}


def _prepare_liveavatar(case: Any, http: httpx.Client) -> dict[str, str]:
    def token() -> dict[str, str]:
        body = {"mode": "LITE", "avatar_id": "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"}
        data: dict[str, str] = http.post("/v1/sessions/token", json=body).json()["data"]
        return data

    active = token()
    http.post("/v1/sessions/start", headers={"authorization": f"Bearer {active['session_token']}"})
    if case.path == "/v1/sessions/start":
        return {"authorization": f"Bearer {token()['session_token']}"}
    if "session_id" in (case.path_parameters or {}):
        if not _keep_random(case.path_parameters["session_id"]):
            case.path_parameters["session_id"] = active["session_id"]
    elif (
        case.path in ("/v1/sessions/stop", "/v1/sessions/keep-alive")
        and isinstance(case.body, dict)
        and not _keep_random(case.body.get("session_id"))
    ):
        return {"authorization": f"Bearer {active['session_token']}"}
    return {"X-API-KEY": API_KEY}


@pytest.mark.parametrize(("provider", "operation"), OPERATIONS)
def test_the_emulator_answers_as_the_vendor_documents(
    provider: str,
    operation: Any,
    contract_emulator: EmulatorHandle,
    http: httpx.Client,
    session: requests.Session,
) -> None:
    method = operation.method.upper()

    @seed(20261121)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        contract_emulator.reset()
        if provider == "vectara":
            headers = _prepare_vectara(case, http)
        elif provider == "liveavatar":
            headers = _prepare_liveavatar(case, http)
        else:
            headers = {"authorization": API_KEY}
        response = case.call(base_url=contract_emulator.url, headers=headers, session=session)
        if (method, operation.path, response.status_code) in EXTRA_STATUSES:
            assert set(response.json()) == ERROR_ENVELOPES[provider], response.text
            return
        case.validate_response(response, checks=CHECKS)

    check()


#: The keys of each vendor's error body, for statuses its document does not list.
ERROR_ENVELOPES = {
    "vectara": {"messages", "request_id", "field_errors"},
    "liveavatar": {"code", "data", "message"},
    "voiceflow": {"code", "status", "dateTime", "timestamp", "data"},
}


def test_every_exception_names_a_reason() -> None:
    documents = {path.name for _, path in DOCUMENTS}
    for exception in SPEC_EXCEPTIONS:
        assert exception.document in documents
        assert exception.reason
        assert exception.patch is not None or exception.extra_statuses
