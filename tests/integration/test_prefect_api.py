"""Which Prefect API ``prefect-sessions run`` uses, with real processes: a local server already
running is reused; a temporary server that cannot start is one line and exit 2.

The first run on a fresh, busy machine (ten in a row, both cores busy) is ``tests/e2e``'s
``test_first_run.py``: it takes minutes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL

from prefect_sessions.emulator import EmulatorHandle
from tests.support.first_run import free_port, fresh_environment, one_conversation_suite, run_cli


@pytest.fixture(scope="module")
def prepared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PREFECT_HOME whose database is already made (copied for each test that needs one)."""
    home = tmp_path_factory.mktemp("prepared-home")
    subprocess.run(
        [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
        env=fresh_environment(home, free_port()),
        capture_output=True,
        check=True,
        timeout=300,
    )
    return home


@pytest.mark.usefixtures("prefect_server")
def test_a_local_server_already_running_is_reused(tmp_path: Path, emulator: EmulatorHandle):
    # The session's Prefect server stands for the one `make demo` or `prefect server start` left
    # running on the default address.
    api = httpx.URL(str(PREFECT_API_URL.value()))
    home = tmp_path / "home"
    done = run_cli(
        one_conversation_suite(tmp_path, emulator.url),
        tmp_path,
        fresh_environment(home, api.port or 80),
    )
    assert done.returncode == 0, done.stderr
    assert f"Using the Prefect server already running at http://127.0.0.1:{api.port}/api" in (
        done.stderr
    )
    assert "1/1 passed" in done.stdout
    assert f"Prefect UI: http://127.0.0.1:{api.port}/runs/flow-run/" in done.stdout
    # No temporary server: nothing was made in the fresh home.
    assert not (home / "prefect.db").exists()
    assert not (home / "prefect-sessions-server.log").exists()


def test_a_temporary_server_that_cannot_start_is_one_line_and_exit_2(
    tmp_path: Path, prepared_home: Path, emulator: EmulatorHandle
):
    home = tmp_path / "home"
    shutil.copytree(prepared_home, home)
    done = run_cli(
        one_conversation_suite(tmp_path, emulator.url),
        tmp_path,
        # Less time than the server's imports take: it cannot answer in time.
        fresh_environment(home, free_port(), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1"),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    (line,) = lines
    assert "Prefect's temporary server did not answer within 1 s" in line
    assert f"PREFECT_HOME={home}" in line
    assert "prefect server start" in line
    assert "PREFECT_API_URL" in line
    assert "nothing was run" in line
    assert "Traceback" not in done.stdout + done.stderr
    assert emulator.count("requests") == 0


def test_a_new_database_that_cannot_be_prepared_in_time_is_one_line_and_exit_2(
    tmp_path: Path, emulator: EmulatorHandle
):
    home = tmp_path / "fresh-home"
    done = run_cli(
        one_conversation_suite(tmp_path, emulator.url),
        tmp_path,
        fresh_environment(home, free_port(), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1"),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (
        f"prefect-sessions run: Preparing Prefect's database in {home} (its first run; this "
        "takes a moment)"
    )
    assert len(lines) == 2, done.stderr
    assert "could not prepare its database within 1 s" in lines[1]
    assert f"its log: {home / 'prefect-sessions-server.log'}" in lines[1]
    assert "Traceback" not in done.stdout + done.stderr
    assert emulator.count("requests") == 0


def test_a_temporary_server_on_a_prepared_home_runs_theone_conversation_suite(
    tmp_path: Path, prepared_home: Path, emulator: EmulatorHandle
):
    home = tmp_path / "home"
    shutil.copytree(prepared_home, home)
    done = run_cli(
        one_conversation_suite(tmp_path, emulator.url),
        tmp_path,
        fresh_environment(home, free_port()),
    )
    assert done.returncode == 0, done.stderr
    assert "1/1 passed" in done.stdout
    assert "Prefect ran on a temporary local server" in done.stdout
    said = done.stdout + done.stderr
    for noise in ("Traceback", "database is locked", "Error logging to API", "Preparing"):
        assert noise not in said
    # The server's own output went to its log in PREFECT_HOME, not to the terminal.
    assert (home / "prefect-sessions-server.log").exists()
