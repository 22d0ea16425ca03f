"""The emulator judged by a client nobody here wrote: Vectara's official Python SDK (``vectara``,
the version pinned in the Makefile), unchanged but for its base URL, runs agents list, session
create/get/update/list/delete, a message as JSON and as a stream, the events list, and a 404 after
delete over real HTTP. It lives in its own virtual environment (``build/vendor-sdk``, which
``make e2e`` builds): it pins its own PyYAML."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from prefect_sessions.emulator import EmulatorConfig, run_emulator
from tests.e2e.conftest import ROOT

SDK_PYTHON = ROOT / "build" / "vendor-sdk" / "bin" / "python"
SCRIPT = Path(__file__).parent / "vendor_clients" / "vectara_sdk_session.py"


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
