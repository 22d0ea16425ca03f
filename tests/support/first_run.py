"""A user's first run, as a separate process: a suite of one conversation, a shell with no
PREFECT_API_URL and a home of its own, and ``prefect-sessions run`` in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def one_conversation_suite(folder: Path, url: str) -> Path:
    path = folder / "one.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: first-run
            provider: voiceflow
            connection: {{base_url: "{url}", api_key_env: FIRST_RUN_KEY, project_id: demo}}
            conversations:
              - id: greet
                turns:
                  - launch: {{}}
                    expect: [{{contains: Welcome}}]
            """
        ),
        encoding="utf-8",
    )
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fresh_environment(home: Path, port: int, **more: str) -> dict[str, str]:
    """A user's shell with no PREFECT_API_URL, a home of its own, and the default server
    address moved to ``port`` (so a server this machine runs for something else is not found)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PREFECT_") or name == "PREFECT_SESSIONS_E2E"
    }
    environment.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_PORT=str(port),
        FIRST_RUN_KEY="VF.DM.first-run",
        **more,
    )
    return environment


def run_cli(
    suite: Path, folder: Path, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect_sessions.cli",
            "run",
            str(suite),
            "--results-dir",
            str(folder / "runs"),
            "--progress",
            "none",
        ],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
