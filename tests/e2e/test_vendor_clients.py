"""The emulator judged by clients nobody here wrote, each at the version pinned in the Makefile and
changed only in where it sends requests, over real HTTP:

- Vectara's official Python SDK (``vectara``) runs agents list, session create/get/update/list/
  delete, a message as JSON and as a stream, the events list, and a 404 after delete. It lives in
  its own virtual environment (``build/vendor-sdk``): it pins its own PyYAML.
- LiveAvatar's web SDK (npm ``@heygen/liveavatar-web-sdk``, in ``build/vendor-node``) runs its
  ``SessionAPIClient`` in Node: start, keep-alive and stop with the session token.

``make e2e`` builds both."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from prefect_sessions.emulator import EmulatorConfig, run_emulator
from prefect_sessions.liveavatar import AvatarPersona, FullSessionConfig, LiveAvatarCredentials
from prefect_sessions.liveavatar.adapter import SANDBOX_AVATAR_ID
from tests.e2e.conftest import ROOT

SDK_PYTHON = ROOT / "build" / "vendor-sdk" / "bin" / "python"
SCRIPT = Path(__file__).parent / "vendor_clients" / "vectara_sdk_session.py"
WEB_SDK = ROOT / "build" / "vendor-node" / "node_modules" / "@heygen" / "liveavatar-web-sdk"
NODE_SCRIPT = Path(__file__).parent / "vendor_clients" / "liveavatar_session_api.mjs"


@pytest.mark.skipif(not SDK_PYTHON.exists(), reason="make e2e builds build/vendor-sdk")
def test_vectaras_official_sdk_runs_a_session_against_the_emulator() -> None:
    with run_emulator(EmulatorConfig()) as emulator:
        emulator.set_limit("vectara", "off")
        run = subprocess.run(
            [str(SDK_PYTHON), str(SCRIPT), emulator.url, "zwt_official_sdk_key"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    # The SDK logs, and skips, an event it cannot parse: none may be.
    assert "validation error" not in run.stderr, run.stderr[-4000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["agents"] == ["agt_acme_support"]
    assert seen["got"] is True
    assert seen["updated"] == "renamed"
    assert seen["listed"] is True
    assert seen["json_events"] == ["input_message", "agent_output"]
    assert {"input_message", "streaming_agent_output", "context_consumed", "end"} <= set(
        seen["stream_events"]
    )
    assert seen["stored_events"] == ["input_message", "agent_output"] * 2
    assert seen["after_delete"] == 404


@pytest.mark.skipif(not WEB_SDK.exists(), reason="make e2e installs build/vendor-node")
async def test_liveavatars_web_sdk_starts_keeps_alive_and_stops_with_the_session_token() -> None:
    with run_emulator(EmulatorConfig()) as emulator:
        credentials = LiveAvatarCredentials(
            api_key=SecretStr("la-web-sdk-key"), base_url=emulator.url
        )
        config = FullSessionConfig(
            avatar_id=SANDBOX_AVATAR_ID, avatar_persona=AvatarPersona(), is_sandbox=True
        )
        async with credentials.get_client() as client:
            token = await client.create_session_token(config)  # the backend's part, API key
        run = subprocess.run(
            [
                "node",
                str(NODE_SCRIPT),
                str(WEB_SDK),
                emulator.url,
                token.session_token.get_secret_value(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        session = emulator.state.liveavatar.sessions[token.session_id]
        keep_alives = emulator.count("requests", route="POST /v1/sessions/keep-alive")
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["session_id"] == token.session_id
    assert seen["livekit_url"] is True
    assert seen["kept_alive"] is True
    assert seen["stopped"] is True
    assert seen["after_stop"] == 400  # an ended session cannot be kept alive
    assert session.end_reason == "USER_CLOSED"  # the body's documented default
    assert keep_alives == 2
