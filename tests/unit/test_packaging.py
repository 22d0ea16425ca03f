"""The package installs as a typed Prefect collection."""

from __future__ import annotations

from importlib.metadata import entry_points, version
from importlib.resources import files

import prefect_sessions


def test_registered_under_the_prefect_collections_entry_point():
    found = [
        ep for ep in entry_points(group="prefect.collections") if ep.name == "prefect_sessions"
    ]
    assert [ep.value for ep in found] == ["prefect_sessions"]
    assert found[0].load() is prefect_sessions


def test_prefect_discovers_the_collection():
    from prefect.plugins import load_prefect_collections

    assert "prefect_sessions" in load_prefect_collections()


def test_typed_and_versioned():
    assert (files("prefect_sessions") / "py.typed").is_file()
    assert version("prefect-sessions") == prefect_sessions.__version__


def test_each_flow_is_defined_once_in_the_package():
    # The CLI and the deployments run the same flow objects: the entrypoints in flows/ import them.
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    defined = sorted(
        str(path.relative_to(root))
        for folder in ("prefect_sessions", "flows")
        for path in (root / folder).rglob("*.py")
        if "@flow(" in path.read_text(encoding="utf-8")
    )
    assert defined == [
        "prefect_sessions/flows/batch.py",
        "prefect_sessions/flows/maintenance.py",
        "prefect_sessions/flows/shard.py",
        "prefect_sessions/flows/triggered.py",
    ]
    from flows.batch_conversations import batch_conversations as deployed
    from prefect_sessions.flows import batch_conversations

    assert deployed is batch_conversations


def test_the_shard_flow_ships_in_the_wheel():
    # The batch flow starts shards as runs of the shard deployment: a worker that installed the
    # package, without this repository, must be able to load that flow.
    from prefect_sessions.batch.shards import SHARD_DEPLOYMENT
    from prefect_sessions.flows import batch_conversations_shard

    assert (files("prefect_sessions") / "flows" / "shard.py").is_file()
    assert SHARD_DEPLOYMENT.split("/")[0] == batch_conversations_shard.name


def test_validating_or_running_a_suite_loads_no_emulator():
    # The emulator (FastAPI, uvicorn) is its own command: the CLI hands `emulator ...` over
    # before parsing, so `prefect-sessions validate` stays light.
    import subprocess
    import sys

    probe = (
        "import sys, prefect_sessions.cli; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('uvicorn', 'fastapi', 'prefect_sessions.emulator'))))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "[]"
