"""The deployments of prefect.yaml on a real server with a process worker, against the emulator:
deployed as written, a scheduled run executes, an event starts the triggered conversation and its
outcome comes back as an event, the maintenance flow stops an over-age LiveAvatar session.

Waiting: flow runs and events are awaited through Prefect's event stream
(``wait_for_flow_run``, ``get_events_subscriber``). Only the scheduler's creation of runs has no
event to await; it is polled, bounded (``_poll``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.events import Event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.events import ResourceSpecification
from prefect.flow_runs import wait_for_flow_run
from prefect.states import Scheduled
from pydantic import SecretStr

from prefect_sessions.conversation.triggered import COMPLETED_EVENT
from prefect_sessions.liveavatar import AvatarPersona, FullSessionConfig, LiveAvatarCredentials
from prefect_sessions.maintenance import SUMMARY_ARTIFACT_KEY
from tests.e2e.conftest import KEYS, POOL, Stack, secrets_in

T = TypeVar("T")

NIGHTLY = "batch-conversations/nightly-suite"
TRIGGERED = "triggered-conversation/on-ticket-created"
MAINTENANCE = "session-maintenance/session-maintenance"
SHARD = "batch-conversations-shard/shard"
RUN_TIMEOUT = 240


def _poll(read: Callable[[], T | None], what: str, timeout: float = 90) -> T:
    """For what has no event to await: call ``read`` until it returns something, bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def _finished(flow_run_id: UUID, stack: Stack) -> FlowRun:
    flow_run = await wait_for_flow_run(flow_run_id, timeout=RUN_TIMEOUT)
    assert flow_run.state is not None
    assert flow_run.state.is_completed(), (
        f"flow run {flow_run.name} ended {flow_run.state.type}: {flow_run.state.message}\n"
        f"worker log tail:\n{stack.log('worker')[-3000:]}"
    )
    return flow_run


def test_prefect_yaml_deploys_the_three_flows(stack: Stack) -> None:
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name(NIGHTLY)
        triggered = client.read_deployment_by_name(TRIGGERED)
        maintenance = client.read_deployment_by_name(MAINTENANCE)
        shard = client.read_deployment_by_name(SHARD)
        automations = client.read_automations()

    for deployment in (nightly, triggered, maintenance, shard):
        assert deployment.work_pool_name == POOL
        assert secrets_in(deployment.parameters) == []
    # Shards go to their own queue, so their workers are never busy with the runs that wait.
    assert (nightly.work_queue_name, shard.work_queue_name) == ("default", "shards")
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]  # type: ignore[union-attr]
    assert [s.schedule.interval for s in maintenance.schedules] == [timedelta(minutes=15)]  # type: ignore[union-attr]
    # The run form offers a block picker per credentials type, with secret fields masked.
    schema = nightly.parameter_openapi_schema
    assert schema is not None
    options = schema["properties"]["credentials"]["anyOf"]
    slugs = {
        schema["definitions"][o["$ref"].rsplit("/", 1)[1]]["block_type_slug"]
        for o in options
        if "$ref" in o
    }
    assert slugs == {"voiceflow-credentials", "vectara-credentials", "liveavatar-credentials"}
    # The event trigger became an automation that runs the triggered deployment.
    runs_triggered = [
        automation
        for automation in automations
        if any(getattr(a, "deployment_id", None) == triggered.id for a in automation.actions)
    ]
    assert len(runs_triggered) == 1
    assert runs_triggered[0].trigger.expect == {"crm.ticket.created"}  # type: ignore[union-attr]


def test_a_scheduled_run_of_the_nightly_suite_executes(stack: Stack) -> None:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(NIGHTLY)

        def scheduled() -> list[FlowRun]:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                    )
                ),
            )

        # The scheduler made these from the cron schedule (it has no event to await).
        runs = _poll(scheduled, "the scheduler to create the nightly runs")
        first = min(runs, key=lambda run: run.expected_start_time or datetime.max)
        assert first.auto_scheduled
        assert first.expected_start_time is not None
        planned = first.expected_start_time.astimezone(timezone.utc)
        assert (planned.hour, planned.minute) == (2, 0)
        # Bring the night forward: the same scheduled run, due now.
        client.set_flow_run_state(
            first.id, Scheduled(scheduled_time=datetime.now(timezone.utc)), force=True
        )

    before = stack.emulator.count(key=KEYS["E2E_VOICEFLOW_KEY"])
    finished = asyncio.run(_finished(first.id, stack))

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["nightly-regression-summary"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[finished.id]),
            )
        )
    assert len(artifacts) == 1
    table = {row["metric"]: row["value"] for row in _rows(artifacts[0].data)}
    assert table["conversations"] == table["passed"] == 200
    # The suite's saved block (voiceflow-credentials/production) carried the requests.
    assert stack.emulator.count(key=KEYS["E2E_VOICEFLOW_KEY"]) > before


def _rows(data: object) -> list[dict[str, object]]:
    import json

    rows = json.loads(data) if isinstance(data, str) else data
    assert isinstance(rows, list)
    return rows


async def test_a_ticket_event_runs_a_conversation_and_its_outcome_comes_back(stack: Stack) -> None:
    user = f"cust-{uuid.uuid4().hex[:8]}"
    ticket = Event(
        event="crm.ticket.created",
        resource={"prefect.resource.id": f"crm.ticket.T-{user}"},
        payload={
            "user_id": user,
            "subject": "Order 12345 arrived broken",
            "variables": {"topic": "warranty", "ticket": f"T-{user}"},
        },
    )
    outcomes = EventFilter(
        event=EventNameFilter(prefix=["prefect-sessions.conversation."]),
        resource=EventResourceFilter(
            labels=ResourceSpecification({"prefect-sessions.user-id": user})
        ),
    )
    async with get_events_subscriber(filter=outcomes) as subscriber:
        # What a CRM's webhook bridge would do: POST the event to the server's events API.
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{stack.api_url}/events", json=[ticket.model_dump(mode="json")]
            )
        assert response.status_code == 204
        outcome = await asyncio.wait_for(anext(aiter(subscriber)), timeout=RUN_TIMEOUT)

    assert outcome.event == COMPLETED_EVENT, outcome.payload
    assert outcome.payload["outcome"] == "passed"
    assert outcome.payload["source_event_id"] == str(ticket.id)
    assert outcome.payload["provider"] == "voiceflow"
    # The agent answered the ticket's subject, with the session variable from the event's payload.
    reply = outcome.payload["last_reply"]
    assert "order 12345" in reply
    assert "warranty request" in reply
    flow_runs = [r for r in outcome.related if r.role == "flow-run"]
    assert len(flow_runs) == 1
    flow_run_id = UUID(flow_runs[0].id.removeprefix("prefect.flow-run."))

    finished = await _finished(flow_run_id, stack)
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(TRIGGERED)
    assert finished.deployment_id == deployment.id
    assert finished.parameters["user_id"] == user
    assert finished.parameters["variables"] == ticket.payload["variables"]
    assert finished.parameters["credentials"] == {
        "$ref": {"block_document_slug": "voiceflow-credentials/production"}
    }
    assert secrets_in(finished.parameters) == []


async def test_maintenance_stops_an_over_age_liveavatar_session(stack: Stack) -> None:
    credentials = LiveAvatarCredentials(
        api_key=SecretStr(KEYS["E2E_LIVEAVATAR_KEY"]), base_url=stack.emulator.url
    )
    config = FullSessionConfig(
        avatar_id="dd73ea75-1218-4ef3-92ce-606d5f7fbc0a",
        avatar_persona=AvatarPersona(),
        is_sandbox=False,
    )
    async with credentials.get_client() as client:
        token = await client.create_session_token(config)
        started = await client.start_session(token)
    session_id = started.session_id

    # Seen from two hours on, the session is over the deployment's 60 minutes.
    as_of = datetime.now(timezone.utc) + timedelta(hours=2)
    flow_run = await run_deployment(MAINTENANCE, parameters={"as_of": as_of.isoformat()}, timeout=0)
    finished = await _finished(flow_run.id, stack)

    async with credentials.get_client() as client:
        entry = await client.get_session(session_id)
    assert entry.end_reason == "MAX_DURATION_REACHED"
    assert entry.end_at is not None
    async with get_client() as prefect:
        artifacts = await prefect.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[SUMMARY_ARTIFACT_KEY]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[finished.id]),
            )
        )
    assert len(artifacts) == 1
    assert session_id in str(artifacts[0].data)
