"""The session-maintenance flow on the session-wide Prefect server, against the emulator over real
HTTP on 127.0.0.1.

Sessions are made "old" without waiting: the emulator is built with ``create_app(clock=...)`` and
a clock the test shifts into the past while it creates a session, then back to now. The flow sees
the sessions' ``created_at`` and event times in the past, exactly as a real API would report them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.exceptions import ParameterTypeError
from prefect.flows import load_flow_from_entrypoint
from prefect.states import State
from prefect.utilities.callables import parameter_schema
from pydantic import SecretStr

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, run_emulator
from prefect_sessions.errors import ConfigurationError, NotFoundError
from prefect_sessions.liveavatar import AvatarPersona, FullSessionConfig, LiveAvatarCredentials
from prefect_sessions.liveavatar.maintenance import (
    TRANSCRIPT_KEY_PREFIX,
    LiveAvatarPolicy,
    TranscriptExport,
)
from prefect_sessions.maintenance import SUMMARY_ARTIFACT_KEY, MaintenanceError, MaintenanceReport
from prefect_sessions.vectara import AgentSession, VectaraCredentials
from prefect_sessions.vectara.maintenance import VectaraPolicy, idle_since
from prefect_sessions.vectara.models import AgentOutputEvent, UnknownEvent

pytestmark = pytest.mark.usefixtures("prefect_server")

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = f"{ROOT / 'flows' / 'session_maintenance.py'}:session_maintenance"
LIVEAVATAR_KEY = "CANARY-maintenance-liveavatar-7d1e"
VECTARA_KEY = "CANARY-maintenance-vectara-90ab"
AGENT = "agt_acme_support"  # the emulator's scripted agent
AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"
FULL = FullSessionConfig(avatar_id=AVATAR_ID, avatar_persona=AvatarPersona(), is_sandbox=False)
HOUR = 3600.0
DAY = 24 * HOUR

session_maintenance = load_flow_from_entrypoint(ENTRYPOINT)


class ShiftedClock:
    """The emulator's wall clock, ``offset`` seconds away from the real one."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    @contextmanager
    def ago(self, seconds: float) -> Iterator[None]:
        self.offset = -seconds
        try:
            yield
        finally:
            self.offset = 0.0


@pytest.fixture(scope="module")
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture(scope="module")
def served(clock: ShiftedClock) -> Iterator[EmulatorHandle]:
    # Sessions must not end by themselves while the clock jumps hours: no idle timeout, no rate
    # windows.
    config = EmulatorConfig(
        idle_timeout_seconds=30 * DAY, limits={"liveavatar": None, "vectara": None}
    )
    with run_emulator(config, clock=clock) as handle:
        yield handle


@pytest.fixture
def emulator(served: EmulatorHandle, clock: ShiftedClock) -> EmulatorHandle:
    clock.offset = 0.0
    served.reset()
    return served


@pytest.fixture
def liveavatar(emulator: EmulatorHandle) -> LiveAvatarCredentials:
    return LiveAvatarCredentials(api_key=SecretStr(LIVEAVATAR_KEY), base_url=emulator.url)


@pytest.fixture
def vectara(emulator: EmulatorHandle) -> VectaraCredentials:
    return VectaraCredentials(api_key=SecretStr(VECTARA_KEY), base_url=emulator.url)


async def start_avatar(credentials: LiveAvatarCredentials) -> str:
    async with credentials.get_client() as client:
        token = await client.create_session_token(FULL)
        started = await client.start_session(token)
    return started.session_id


async def vectara_session(credentials: VectaraCredentials, name: str, message: bool) -> str:
    async with credentials.get_client() as client:
        session = await client.create_session(AGENT, name=name)
        if message:
            await client.send_message(AGENT, session.key, "Where is my order?")
    return session.key


class Estate:
    """The sessions every test starts from, with their ages set through the emulator's clock."""

    old_avatar: str  # active, started 2 h ago: over a 60-minute maximum age
    young_avatar: str  # active, started now
    ended_avatar: str  # stopped by its user a minute ago: its transcript is due for export
    idle: str  # created and last used 10 days ago
    fresh: str  # created now
    revived: str  # created 10 days ago, used again now: idle is measured from the last event


@pytest.fixture
async def estate(
    clock: ShiftedClock, liveavatar: LiveAvatarCredentials, vectara: VectaraCredentials
) -> Estate:
    made = Estate()
    with clock.ago(2 * HOUR):
        made.old_avatar = await start_avatar(liveavatar)
    made.young_avatar = await start_avatar(liveavatar)
    with clock.ago(60):
        made.ended_avatar = await start_avatar(liveavatar)
        async with liveavatar.get_client() as client:
            await client.stop_session(made.ended_avatar, "USER_CLOSED")
    with clock.ago(10 * DAY):
        made.idle = await vectara_session(vectara, "idle", message=True)
        made.revived = await vectara_session(vectara, "revived", message=False)
    made.fresh = await vectara_session(vectara, "fresh", message=False)
    async with vectara.get_client() as client:
        await client.send_message(AGENT, made.revived, "Are you still there?")
    return made


def parameters(
    liveavatar: LiveAvatarCredentials, vectara: VectaraCredentials, **extra: Any
) -> dict[str, Any]:
    return {
        "liveavatar_credentials": liveavatar,
        "vectara_credentials": vectara,
        "liveavatar": LiveAvatarPolicy(max_age_minutes=60),
        "vectara": VectaraPolicy(agent_keys=[AGENT], max_idle_hours=7 * 24),
        **extra,
    }


async def run(**params: Any) -> tuple[State[Any], MaintenanceReport | None]:
    state = await session_maintenance(**params, return_state=True)
    if not state.is_completed():
        return state, None
    report = await state.result()
    assert isinstance(report, MaintenanceReport)
    return state, report


async def summary_of(state: State[Any]) -> str:
    async with get_client() as prefect:
        artifacts = await prefect.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[SUMMARY_ARTIFACT_KEY]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    assert len(artifacts) == 1
    return str(artifacts[0].data)


async def transcript_artifacts(*session_ids: str) -> dict[str, str]:
    keys = [f"{TRANSCRIPT_KEY_PREFIX}{session_id}" for session_id in session_ids]
    async with get_client() as prefect:
        found = await prefect.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=keys))
        )
    return {str(item.key).removeprefix(TRANSCRIPT_KEY_PREFIX): str(item.data) for item in found}


async def avatar_state(credentials: LiveAvatarCredentials, session_id: str) -> str | None:
    """``None`` while active, else the end reason."""
    async with credentials.get_client() as client:
        entry = await client.get_session(session_id)
    return entry.end_reason if entry.end_at else None


async def vectara_keys(credentials: VectaraCredentials) -> set[str]:
    async with credentials.get_client() as client:
        return {session.key async for session in client.list_sessions(AGENT)}


async def test_stops_over_age_deletes_idle_and_exports_transcripts_to_files(
    estate: Estate,
    liveavatar: LiveAvatarCredentials,
    vectara: VectaraCredentials,
    tmp_path: Path,
):
    export = TranscriptExport(destination="file", directory=str(tmp_path))

    state, report = await run(**parameters(liveavatar, vectara, transcripts=export, dry_run=False))

    assert report is not None, state.message
    assert [a.session for a in report.of("stop", "done")] == [estate.old_avatar]
    assert [a.session for a in report.of("delete", "done")] == [estate.idle]
    exported = sorted(a.session for a in report.of("export", "done"))
    assert exported == sorted([estate.old_avatar, estate.ended_avatar])
    assert not report.failed

    # The provider's view: only the old session stopped, with the reason for an age limit.
    assert await avatar_state(liveavatar, estate.old_avatar) == "MAX_DURATION_REACHED"
    assert await avatar_state(liveavatar, estate.young_avatar) is None
    assert await vectara_keys(vectara) == {estate.fresh, estate.revived}
    async with vectara.get_client() as client:
        with pytest.raises(NotFoundError):
            await client.get_session(AGENT, estate.idle)

    files = sorted(path.name for path in tmp_path.iterdir())
    assert files == sorted(f"liveavatar-{s}.json" for s in (estate.old_avatar, estate.ended_avatar))
    document = json.loads((tmp_path / f"liveavatar-{estate.old_avatar}.json").read_text())
    assert document["session"]["end_reason"] == "MAX_DURATION_REACHED"
    assert [line["role"] for line in document["transcript"]] == ["avatar"]  # the greeting
    assert document["transcript"][0]["transcript"]

    summary = await summary_of(state)
    for name in (estate.old_avatar, estate.idle, estate.ended_avatar):
        assert name in summary
    for name in (estate.young_avatar, estate.fresh, estate.revived):
        assert name not in summary
    assert "Changes made" in summary

    # A second run finds nothing left to do: no stop, no delete, no export twice.
    again_state, again = await run(
        **parameters(liveavatar, vectara, transcripts=export, dry_run=False)
    )
    assert again is not None, again_state.message
    assert again.actions == []
    assert again.checked["LiveAvatar transcripts already exported"] == 2


async def test_dry_run_reports_everything_and_changes_nothing(
    estate: Estate, emulator: EmulatorHandle, liveavatar, vectara
):
    before = emulator.counters()

    state, report = await run(**parameters(liveavatar, vectara))  # dry_run is the default

    assert report is not None, state.message
    assert report.dry_run
    assert [a.session for a in report.of("stop", "dry run")] == [estate.old_avatar]
    assert [a.session for a in report.of("delete", "dry run")] == [estate.idle]
    would_export = sorted(a.session for a in report.of("export", "dry run"))
    assert would_export == sorted([estate.old_avatar, estate.ended_avatar])
    assert {a.outcome for a in report.actions} == {"dry run"}

    assert await avatar_state(liveavatar, estate.old_avatar) is None
    assert await vectara_keys(vectara) == {estate.idle, estate.fresh, estate.revived}
    assert await transcript_artifacts(estate.old_avatar, estate.ended_avatar) == {}
    # Only reads reached the providers.
    new_routes = {row["route"] for row in emulator.counters() if row not in before}
    assert new_routes, "the dry run read nothing"
    assert all(route.startswith("GET ") for route in new_routes), new_routes
    summary = await summary_of(state)
    assert "Dry run: nothing was changed" in summary
    assert "Would be stopped" in summary
    assert estate.old_avatar in summary
    assert estate.idle in summary


async def test_transcripts_go_to_artifacts_once(estate: Estate, liveavatar, emulator):
    params = {
        "liveavatar_credentials": liveavatar,
        "liveavatar": LiveAvatarPolicy(stop_over_age=False),
        "transcripts": TranscriptExport(destination="artifact", ended_within_hours=1),
        "dry_run": False,
    }

    state, report = await run(**params)

    assert report is not None, state.message
    assert [a.session for a in report.of("export", "done")] == [estate.ended_avatar]
    assert report.of("stop") == []
    artifacts = await transcript_artifacts(estate.ended_avatar, estate.old_avatar)
    assert list(artifacts) == [estate.ended_avatar]
    assert "| avatar |" in artifacts[estate.ended_avatar]
    assert "USER_CLOSED" in artifacts[estate.ended_avatar]
    transcript_reads = emulator.count(route="GET /v1/sessions/{session_id}/transcript")
    assert transcript_reads == 1

    again_state, again = await run(**params)
    assert again is not None, again_state.message
    assert again.of("export") == []
    assert emulator.count(route="GET /v1/sessions/{session_id}/transcript") == transcript_reads


async def test_a_session_that_cannot_be_stopped_fails_the_run_after_the_others(
    clock: ShiftedClock, emulator: EmulatorHandle, liveavatar: LiveAvatarCredentials
):
    with clock.ago(3 * HOUR):
        first = await start_avatar(liveavatar)
        second = await start_avatar(liveavatar)
    # One attempt per request, so the fault is not retried away.
    flaky = liveavatar.model_copy(update={"max_attempts": 1})
    emulator.queue_fault("error", count=1, route="/v1/sessions/stop")

    state = await session_maintenance(
        liveavatar_credentials=flaky,
        transcripts=TranscriptExport(enabled=False),
        dry_run=False,
        max_concurrency=1,
        return_state=True,
    )

    assert state.is_failed()
    with pytest.raises(MaintenanceError, match="1 of 2 session actions failed"):
        await state.result()
    states = {first: await avatar_state(flaky, first), second: await avatar_state(flaky, second)}
    assert set(states.values()) == {None, "MAX_DURATION_REACHED"}  # one stopped, one not
    summary = await summary_of(state)
    assert "failed" in summary
    assert "ProviderUnavailableError" in summary


async def test_settings_that_cannot_work_fail_before_any_request(
    emulator: EmulatorHandle, vectara: VectaraCredentials
):
    state = await session_maintenance(vectara_credentials=vectara, return_state=True)

    assert state.is_failed()
    with pytest.raises(ConfigurationError, match=r"vectara\.agent_keys is empty"):
        await state.result()
    assert emulator.count() == 0


async def test_secrets_stay_out_of_the_flow_run_parameters(
    liveavatar: LiveAvatarCredentials, vectara: VectaraCredentials
):
    await liveavatar.save("maintenance-liveavatar", overwrite=True)
    loaded = await LiveAvatarCredentials.load("maintenance-liveavatar")

    state = await session_maintenance(
        liveavatar_credentials=loaded,
        vectara_credentials=vectara,
        vectara=VectaraPolicy(agent_keys=[AGENT]),
        return_state=True,
    )

    assert state.is_completed(), state.message
    async with get_client() as prefect:
        flow_run = await prefect.read_flow_run(UUID(str(state.state_details.flow_run_id)))
    stored = json.dumps(flow_run.parameters, default=str)
    assert "liveavatar_credentials" in stored
    assert LIVEAVATAR_KEY not in stored
    assert VECTARA_KEY not in stored


def test_the_ui_form_offers_block_pickers_and_typed_settings():
    schema = parameter_schema(session_maintenance).model_dump()
    definitions = schema["definitions"]

    assert definitions["LiveAvatarCredentials"]["block_type_slug"] == "liveavatar-credentials"
    assert definitions["VectaraCredentials"]["block_type_slug"] == "vectara-credentials"
    assert definitions["LiveAvatarCredentials"]["secret_fields"] == ["api_key"]
    policy = definitions["LiveAvatarPolicy"]["properties"]
    assert policy["end_reason"]["default"] == "MAX_DURATION_REACHED"
    assert "IDLE_TIMEOUT" in policy["end_reason"]["enum"]
    assert definitions["TranscriptExport"]["properties"]["destination"]["enum"] == [
        "artifact",
        "file",
    ]
    assert schema["properties"]["dry_run"]["default"] is True
    assert schema["properties"]["as_of"]["anyOf"][0]["format"] == "date-time"
    assert "Reference time" in schema["properties"]["as_of"]["description"]


def test_form_and_deployment_parameters_become_typed_settings(emulator: EmulatorHandle):
    credentials = LiveAvatarCredentials(api_key=SecretStr(LIVEAVATAR_KEY), base_url=emulator.url)
    block_id = credentials.save("maintenance-form", overwrite=True)

    # What the UI form sends: a block reference and plain JSON for the settings.
    resolved = session_maintenance.validate_parameters(
        {
            "liveavatar_credentials": {"$ref": {"block_document_id": str(block_id)}},
            "vectara_credentials": None,
            "liveavatar": {"max_age_minutes": 15, "end_reason": "ZOMBIE_SESSION_REAP"},
            "transcripts": {"destination": "file", "directory": "/tmp/t"},
            "dry_run": False,
            "as_of": "2026-01-02T03:04:05Z",
        }
    )
    by_slug = session_maintenance.validate_parameters(
        {
            "liveavatar_credentials": {
                "$ref": {"block_document_slug": "liveavatar-credentials/maintenance-form"}
            }
        }
    )

    loaded = resolved["liveavatar_credentials"]
    assert isinstance(loaded, LiveAvatarCredentials)
    assert loaded.api_key.get_secret_value() == LIVEAVATAR_KEY
    assert resolved["liveavatar"] == LiveAvatarPolicy(
        max_age_minutes=15, end_reason="ZOMBIE_SESSION_REAP"
    )
    assert resolved["transcripts"] == TranscriptExport(destination="file", directory="/tmp/t")
    assert resolved["as_of"].isoformat() == "2026-01-02T03:04:05+00:00"
    assert isinstance(by_slug["liveavatar_credentials"], LiveAvatarCredentials)
    with pytest.raises(ParameterTypeError):
        session_maintenance.validate_parameters({"liveavatar": {"end_reason": "BORED"}})


def test_idle_is_measured_from_the_latest_event_else_the_session():
    created = "2025-01-01T00:00:00Z"
    session = AgentSession(key="s", agent_key=AGENT, created_at=created)  # type: ignore[arg-type]
    events = [
        AgentOutputEvent(content="hi", created_at="2025-01-03T00:00:00Z"),  # type: ignore[arg-type]
        UnknownEvent.model_validate({"type": "new_kind", "created_at": "2025-01-05T08:00:00Z"}),
        AgentOutputEvent(content="undated"),
    ]

    assert idle_since(session, events).isoformat() == "2025-01-05T08:00:00+00:00"  # type: ignore[union-attr]
    assert idle_since(session, []).isoformat() == "2025-01-01T00:00:00+00:00"  # type: ignore[union-attr]
    assert idle_since(AgentSession(key="s", agent_key=AGENT), []) is None
