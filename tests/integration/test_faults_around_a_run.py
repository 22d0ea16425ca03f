"""Faults around a run, through the batch flow and the CLI on a real Prefect server: a provider
that stops answering, a Redis that is not there, a Prefect API that is not there.

Each case checks the one line that says what went away and the fix, the exit code or the flow
run's state, and that nothing with a verdict is lost and nothing without one is recorded. The
slow cases (the default 30 s give-up, a killed ``prefect server``) run in ``make e2e``.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from prefect_sessions.batch.run import listening
from prefect_sessions.cli import main
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.errors import ConfigurationError, ProviderDownError
from prefect_sessions.flows import batch_conversations
from prefect_sessions.http import shared_pacing
from prefect_sessions.http.shared_pacing import REDIS_URL_ENV
from prefect_sessions.voiceflow import VoiceflowCredentials
from tests.support.own_redis import OwnRedis
from tests.support.reliability import API_KEY, INTERACT, PROJECT, write_suite

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("RELIABILITY_KEY", API_KEY)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_provider_that_stops_answering_fails_the_run_with_one_resumable_line(
    tmp_path: Path, emulator
):
    """Nothing listens at the base URL. With a 2 s give-up the run stops; several chunks were
    queued, and none reports the closed client instead of the cause."""
    url = closed_port_url()
    suite = write_suite(tmp_path, url, rows=8, concurrency=2)
    block = VoiceflowCredentials(
        api_key=API_KEY, project_id=PROJECT, base_url=url, give_up_after_seconds=2
    )
    state = await batch_conversations(
        suite_path=str(suite),
        run_key="down",
        results_dir=str(tmp_path / "runs"),
        credentials=block,
        chunk_size=2,
        return_state=True,
    )
    assert state.is_failed()
    message = state.message or ""
    assert message.startswith(f"the provider at {url} did not answer for 2 s (connection refused")
    assert message.endswith(
        "0 of 8 conversations have a verdict and are kept; resume with run key down"
    )
    assert "async with" not in message
    assert "\n" not in message
    with pytest.raises(ProviderDownError):
        await state.aresult()
    results = tmp_path / "runs" / "reliability" / "down.jsonl"
    assert not results.exists() or len(ResultStore(results).finished()) == 0  # no verdict made up


def test_redis_unreachable_at_start_exits_2_with_one_line_and_sends_nothing(
    tmp_path: Path, emulator, monkeypatch, capsys
):
    monkeypatch.setenv(REDIS_URL_ENV, f"redis://:hunter2@127.0.0.1:{closed_port_url()[17:]}/0")
    suite = write_suite(tmp_path, emulator.url, rows=3)
    before = emulator.count("requests")
    code = main(["run", str(suite), "--results-dir", str(tmp_path), "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2
    line = next(line for line in err.splitlines() if line.startswith("prefect-sessions run:"))
    assert REDIS_URL_ENV in line
    assert "unset" in line
    assert "hunter2" not in err
    assert "Traceback" not in err
    assert emulator.count("requests") == before


async def test_redis_unreachable_fails_a_deployed_flow_run_with_the_same_line(
    tmp_path: Path, emulator, monkeypatch
):
    monkeypatch.setenv(REDIS_URL_ENV, f"redis://127.0.0.1:{closed_port_url()[17:]}/0")
    suite = write_suite(tmp_path, emulator.url, rows=3)
    state = await batch_conversations(
        suite_path=str(suite), results_dir=str(tmp_path), return_state=True
    )
    assert state.is_failed()
    assert (state.message or "").startswith(f"{REDIS_URL_ENV} names Redis at redis://127.0.0.1:")
    with pytest.raises(ConfigurationError):
        await state.aresult()


def test_the_prefect_api_unreachable_at_start_exits_2_with_one_line(
    tmp_path: Path, emulator, capsys
):
    suite = write_suite(tmp_path, emulator.url, rows=2)
    api = f"{closed_port_url()}/api"
    before = emulator.count("requests")
    with temporary_settings({PREFECT_API_URL: api}):
        code = main(["run", str(suite), "--results-dir", str(tmp_path), "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        f"prefect-sessions run: the Prefect API at {api} did not answer (connection refused): "
        "start it (prefect server start) or fix PREFECT_API_URL; nothing was run"
    )
    assert emulator.count("requests") == before


async def test_redis_stopped_then_restarted_mid_run_loses_no_conversation(
    tmp_path: Path, emulator, own_redis: OwnRedis, monkeypatch, caplog
):
    """Shared pacing through a Redis that stops after 40 verdicts and is back after 80: the run
    goes on paced in-process meanwhile, warns once, and returns to the shared schedule."""
    monkeypatch.setenv(REDIS_URL_ENV, own_redis.url)
    monkeypatch.setattr(shared_pacing, "FALLBACK_RETRY_SECONDS", 0.2)
    emulator.set_limit("voiceflow", "100/1s")  # a published limit, so Redis holds the schedule
    suite = write_suite(tmp_path, emulator.url, rows=150, concurrency=8)
    verdicts = 0

    def outage(result: ConversationResult) -> None:
        nonlocal verdicts
        verdicts += 1
        if verdicts == 40:
            own_redis.stop()
        elif verdicts == 80:
            own_redis.start()

    caplog.set_level(logging.WARNING, logger="prefect_sessions.http")
    turns_before = emulator.count(route=INTERACT)
    with listening(outage):
        state = await batch_conversations(
            suite_path=str(suite),
            run_key="redis-outage",
            results_dir=str(tmp_path / "runs"),
            return_state=True,
        )
    summary = await state.aresult()
    assert (summary.passed, summary.failed, summary.errored) == (150, 0, 0)
    assert emulator.count(route=INTERACT) - turns_before == 150 * 3  # no turn sent twice
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if "is unreachable" in m]) == 1
    assert any("answers again" in m for m in said)
    assert summary.rate_limited <= 0.05 * summary.requests
