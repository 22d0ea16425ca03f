"""Faults around a run, met as a user meets them: ``prefect-sessions run`` in a subprocess.

- a provider that is down (a closed port) stops a small and a big suite alike, with the default
  30 s give-up, exit 3 and one line;
- a ``prefect server`` of the test's own (PostgreSQL, like a real deployment) killed mid-run:
  briefly (back 10 s later: the run rides through) and for good (the CLI stops with exit 3 and one
  line, then a resume with the same run key finishes the rest, no conversation run twice).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from prefect_sessions.conversation.results import ResultStore
from tests.e2e.conftest import BIN, OUTPUT, Stack, _database, _free_port, _start, _stop
from tests.e2e.conftest import _wait_for_server as wait_for_server
from tests.support.reliability import API_KEY, INTERACT, write_suite

CLI = str(BIN / "prefect-sessions")
#: Interact turns per conversation of write_suite's default script (launch + 2 texts).
TURNS = 3


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def cli_env(api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_API_URL": api_url, "RELIABILITY_KEY": API_KEY}


def one_line(stderr: str, start: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(start)]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def test_a_provider_that_is_down_stops_small_and_big_suites_alike(stack: Stack, tmp_path: Path):
    url = closed_port_url()
    runs = {}
    for rows in (20, 2000):
        suite = write_suite(tmp_path, url, rows=rows, name=f"down{rows}", concurrency=16)
        command = [CLI, "run", str(suite), "--results-dir", str(tmp_path), "--run-key", "k"]
        started = time.monotonic()
        process = subprocess.Popen(
            [*command, "--progress", "none"],
            env=cli_env(stack.api_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs[rows] = (process, started)
    for rows, (process, started) in runs.items():
        out, err = process.communicate(timeout=120)
        took = time.monotonic() - started
        (OUTPUT / f"provider-down-{rows}.log").write_text(f"{took:.1f} s\n{out}\n{err}")
        assert process.returncode == 3, err[-3000:]
        line = one_line(err, "prefect-sessions run:")
        assert f"the provider at {url} did not answer for 30 s (connection refused" in line
        assert f"0 of {rows} conversations have a verdict" in line
        assert "Traceback" not in err
        assert "async with" not in err
        assert not (tmp_path / f"down{rows}" / "k.jsonl").exists()


class OwnServer:
    """A ``prefect server`` on PostgreSQL that the test may kill and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        connection, self.database = _database(workdir)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_HOME": str(workdir / "home"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_DATABASE_CONNECTION_URL": connection,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        prefect = str(BIN / "prefect")
        command = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = _start(f"own-server-{self.port}", command, self.env)
        wait_for_server(self.api_url, self.process)

    def kill(self) -> None:
        if self.process is not None:
            _stop(self.process)


@pytest.fixture
def own_server(tmp_path: Path):
    server = OwnServer(tmp_path)
    server.start()
    yield server
    server.kill()


def run_until(
    command: list[str], env: dict[str, str], verdicts: int, stderr: Path
) -> subprocess.Popen[str]:
    """Start the CLI with one line per finished conversation; return once ``verdicts`` came.
    The rest of its output keeps being read (a full pipe would stall the run)."""
    with stderr.open("w") as sink:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=sink, text=True)
    assert process.stdout is not None
    for seen, _ in enumerate(process.stdout, start=1):
        if seen == verdicts:
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process
    raise AssertionError(f"the run ended before {verdicts} verdicts")


def test_the_prefect_api_gone_for_good_stops_the_run_then_a_resume_finishes_it(
    stack: Stack, own_server: OwnServer, tmp_path: Path
):
    suite = write_suite(tmp_path, stack.emulator.url, rows=4000, name="outage", concurrency=8)
    command = [CLI, "run", str(suite), "--results-dir", str(tmp_path), "--run-key", "gone"]
    env = cli_env(own_server.api_url)
    turns_before = stack.emulator.count(route=INTERACT)
    log = OUTPUT / "prefect-api-gone.log"
    process = run_until([*command, "--progress", "lines"], env, 200, log)
    own_server.kill()
    killed = time.monotonic()
    process.wait(timeout=180)
    took = time.monotonic() - killed
    err = log.read_text()
    log.write_text(f"exit {process.returncode} {took:.1f} s after the kill\n{err}")
    assert process.returncode == 3, err[-3000:]
    # A heads-up when the silence began, then the one line that ends the run.
    heads_up = one_line(err, f"prefect-sessions run: the Prefect API at {own_server.api_url} stop")
    assert heads_up.endswith("the run stops if it is still silent in 75 s")
    line = one_line(err, f"prefect-sessions run: the Prefect API at {own_server.api_url} did not")
    assert "--run-key gone" in line
    assert "Traceback" not in err
    results = tmp_path / "outage" / "gone.jsonl"
    done = len(results.read_text().splitlines())
    assert 200 <= done < 4000

    own_server.start()
    resumed = subprocess.run(
        [*command, "--progress", "none"], env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    stored = [result.id for result in ResultStore(results)]
    assert len(stored) == len(set(stored)) == 4000  # every conversation once: none lost or rerun
    # No turn was sent twice: each conversation that ran took its turns once (those the kill
    # left in flight never stored a verdict and ran again from a fresh session).
    turns = stack.emulator.count(route=INTERACT) - turns_before
    assert 4000 * TURNS <= turns <= (4000 + 8) * TURNS


def test_a_brief_prefect_api_outage_is_ridden_through(
    stack: Stack, own_server: OwnServer, tmp_path: Path
):
    suite = write_suite(tmp_path, stack.emulator.url, rows=3000, name="blip", concurrency=8)
    command = [CLI, "run", str(suite), "--results-dir", str(tmp_path), "--run-key", "blip"]
    log = OUTPUT / "prefect-api-blip.log"
    process = run_until([*command, "--progress", "lines"], cli_env(own_server.api_url), 200, log)
    own_server.kill()
    # The outage lasts as long as a restart takes, plus 10 s (a deploy, a failover).
    time.sleep(10)
    own_server.start()
    process.wait(timeout=600)
    err = log.read_text()
    assert process.returncode == 0, err[-3000:]
    assert "answers again" in err
    lines = (tmp_path / "blip" / "blip.jsonl").read_text().splitlines()
    assert len(lines) == 3000
