"""The first run on a fresh machine, as a new user or a CI job does it: no PREFECT_API_URL, a new
PREFECT_HOME, and both cores busy. Prefect's own temporary server missed its 20-s start-up in
7 of 7 such runs (a 51-line traceback); each run here must pass and print no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_sessions.emulator import EmulatorHandle
from tests.e2e.conftest import OUTPUT
from tests.support.first_run import free_port, fresh_environment, one_conversation_suite, run_cli

FIRST_RUNS = 10
#: The busy loops outlive no test run, whatever happens to this one.
BUSY_FOR_SECONDS = 1200


@pytest.fixture
def both_cores_busy() -> Iterator[None]:
    hogs = [
        subprocess.Popen(
            ["timeout", str(BUSY_FOR_SECONDS), sys.executable, "-c", "while True: pass"]
        )
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()
            hog.wait()


@pytest.mark.usefixtures("both_cores_busy")
def test_ten_first_runs_pass_on_a_busy_machine(tmp_path: Path, emulator: EmulatorHandle):
    suite = one_conversation_suite(tmp_path, emulator.url)
    took: list[float] = []
    for number in range(1, FIRST_RUNS + 1):
        home = tmp_path / f"home-{number}"
        started = time.monotonic()
        done = run_cli(suite, tmp_path, fresh_environment(home, free_port()))
        took.append(time.monotonic() - started)
        said = done.stdout + done.stderr
        assert done.returncode == 0, f"first run {number}:\n{said}"
        assert "1/1 passed" in done.stdout
        for noise in ("Traceback", "database is locked", "Error logging to API"):
            assert noise not in said, f"first run {number} printed {noise!r}:\n{said}"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "first-runs.txt").write_text(
        "first runs on a fresh PREFECT_HOME, both cores busy, seconds each: "
        + ", ".join(f"{seconds:.1f}" for seconds in took)
        + "\n",
        encoding="utf-8",
    )
