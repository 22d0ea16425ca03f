"""The package installs as a typed Prefect collection."""

from __future__ import annotations

from importlib.metadata import entry_points, version
from importlib.resources import files

import prefect_sessions


def test_registered_under_the_prefect_collections_entry_point():
    # The entry point names the module that imports every credentials block: the package itself
    # imports them lazily (the command line must not load Prefect), so it could not register them.
    found = [
        ep for ep in entry_points(group="prefect.collections") if ep.name == "prefect_sessions"
    ]
    assert [ep.value for ep in found] == ["prefect_sessions.collection"]
    collection = found[0].load()
    assert collection.VoiceflowCredentials is prefect_sessions.VoiceflowCredentials
    from prefect.blocks.core import Block

    for block in (prefect_sessions.VoiceflowCredentials, prefect_sessions.VectaraCredentials):
        assert Block.get_block_class_from_key(block.get_block_type_slug()) is block


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


def _modules_loaded_by(*argv: str) -> list[str]:
    """The Prefect modules (and the emulator's) a fresh interpreter loads for the command."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    probe = (
        "import sys, runpy, contextlib, io\n"
        f"sys.argv = ['prefect-sessions', *{list(argv)!r}]\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    from prefect_sessions.cli import main; main()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules "
        "if m.split('.')[0] in ('prefect', 'fastapi', 'uvicorn', 'sqlalchemy')}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**os.environ, "VOICEFLOW_API_KEY": "any", "VECTARA_API_KEY": "any"},
    )
    return eval(done.stdout.strip().splitlines()[-1])


def test_help_and_validate_load_no_prefect():
    # Start-up a person does not notice: `--help` and `validate` import no Prefect at all (about
    # 2 s of imports), and the package alone imports nothing of the providers.
    assert _modules_loaded_by("--help") == []
    assert _modules_loaded_by("validate", "examples/support-suite.yaml") == []
    assert _modules_loaded_by("validate", "examples/vectara-suite.yaml") == []


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
