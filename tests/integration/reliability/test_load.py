"""Load: a big suite against the emulator at a low rate limit, on a real Prefect server.

`make test` runs 300 conversations; the full 10,000 is the same test with a size from the
environment (see docs/reliability.md):

    RELIABILITY_LOAD_CONVERSATIONS=10000 .venv/bin/pytest -q -s \
        tests/integration/reliability/test_load.py

The run must finish with every conversation accounted for (one verdict each, all passed), the
report's requests and 429s equal to the emulator's counters, and memory bounded: the process's
resident memory in the second half of the run grows by less than a fixed allowance, however many
conversations there are (results stream to the JSONL file, conversations are read lazily).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prefect_sessions.batch.run import listening
from prefect_sessions.conversation.results import ResultStore
from prefect_sessions.emulator import EmulatorConfig
from prefect_sessions.emulator.config import RateLimit
from prefect_sessions.emulator.server import run_emulator
from prefect_sessions.flows import batch_conversations
from prefect_sessions.voiceflow import VoiceflowCredentials
from tests.support.reliability import (
    API_KEY,
    INTERACT,
    PROJECT,
    START,
    accounted,
    conversation_ids,
    write_suite,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

CONVERSATIONS = int(os.environ.get("RELIABILITY_LOAD_CONVERSATIONS", "300"))
#: A low limit for the size: about 3 requests per conversation.
LIMIT = "200/1s" if CONVERSATIONS > 1000 else "100/1s"
#: Growth allowed in the second half of the run (a leak of one result per conversation at 10,000
#: conversations would be far more than this).
ALLOWANCE_MB = 60


def resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_a_big_suite_at_a_low_rate_limit_accounts_for_every_conversation(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("RELIABILITY_KEY", API_KEY)
    config = EmulatorConfig(limits={"voiceflow": RateLimit.parse(LIMIT)})
    with run_emulator(config) as emulator:
        suite = write_suite(
            tmp_path,
            emulator.url,
            rows=CONVERSATIONS,
            concurrency=32,
            name="load",
            turns="""\
              - launch: {}
                expect: [{contains: Welcome}]
            """,
        )
        samples: list[float] = []
        finished = 0

        def sample(_result) -> None:
            nonlocal finished
            finished += 1
            if finished % max(1, CONVERSATIONS // 20) == 0:
                samples.append(resident_mb())

        with listening(sample):
            block = VoiceflowCredentials(api_key=API_KEY, project_id=PROJECT, base_url=emulator.url)
            state = await batch_conversations(
                suite_path=str(suite),
                run_key="load",
                results_dir=str(tmp_path),
                credentials=block,
                chunk_size=250,
                return_state=True,
            )
            summary = await state.aresult()

        latest = accounted(ResultStore(summary.results_path), conversation_ids(CONVERSATIONS))
        assert all(r.status == "passed" for r in latest.values())
        assert summary.conversations == summary.passed == CONVERSATIONS
        # A conversation restarted whole (a turn whose outcome was unknown) starts a second
        # session; the turn itself was never acted on twice.
        restarts = sum(r.attempts - 1 for r in latest.values())
        started = emulator.count("requests", route=START) - emulator.count(
            "rate_limited", route=START
        )
        assert CONVERSATIONS <= started <= CONVERSATIONS + restarts
        assert (
            emulator.count("requests", route=INTERACT)
            - emulator.count("rate_limited", route=INTERACT)
            == CONVERSATIONS
        )
        assert summary.requests == emulator.count("requests")
        assert summary.rate_limited == emulator.count("rate_limited")
        half = samples[len(samples) // 2]
        growth = max(samples) - half
        assert growth < ALLOWANCE_MB, samples
        print(
            f"FIGURES load: {CONVERSATIONS} conversations at {LIMIT}: {summary.passed} passed, "
            f"{summary.requests} requests, {summary.rate_limited} answered 429, "
            f"{summary.duration_s:.0f} s; RSS {samples[0]:.0f} -> {max(samples):.0f} MB, "
            f"second-half growth {growth:.1f} MB"
        )
