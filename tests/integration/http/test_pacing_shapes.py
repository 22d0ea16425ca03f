"""The engine against every shape of limit over real HTTP: the emulator on 127.0.0.1 limits it in
each way real providers do, and it is never told the limit (benchmarks/at_limit measures the
same shapes at scale; here each must simply hold)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from prefect_sessions.batch.chunks import connection_settings
from prefect_sessions.conversation.dataset import iter_conversations
from prefect_sessions.conversation.results import ResultStore
from prefect_sessions.conversation.runner import run_conversations
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.emulator import EmulatorHandle
from prefect_sessions.http import HttpClient, SecretHeaderAuth
from prefect_sessions.voiceflow.adapter import VoiceflowAdapter

KEY = "VF.DM.shapes-0123456789abcdef.key"
SHAPES = {
    "headers, fixed window": "50/1s",
    "retry-after, fixed window": "50/1s publish=retry-after",
    "nothing, sliding window": "50/1s sliding publish=none",
    "nothing, token bucket": "50/1s bucket burst=5 publish=none",
    "nothing, in flight": "inflight=3 publish=none",
}


async def _burst(url: str, workers: int = 12, each: int = 8) -> int:
    """``workers`` callers send ``each`` state reads through one engine client; returns how many
    succeeded (a request that fails raises)."""
    auth = SecretHeaderAuth("authorization", SecretStr(KEY))
    async with HttpClient(provider="Voiceflow", base_url=url, auth=auth) as client:

        async def worker(number: int) -> int:
            for _ in range(each):
                await client.request(
                    "GET",
                    f"/state/user/w{number}",
                    operation="get state",
                    idempotent=True,
                    headers={"projectID": "p"},
                )
            return each

        return sum(await asyncio.gather(*(worker(n) for n in range(workers))))


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_the_engine_holds_under_each_shape_it_is_never_told(
    emulator: EmulatorHandle, shape: str
) -> None:
    emulator.set_limit("voiceflow", SHAPES[shape])
    emulator.set_latency(10)
    assert await _burst(emulator.url) == 96
    attempts, refused = emulator.count("requests"), emulator.count("rate_limited")
    assert attempts - refused == 96
    assert refused / attempts < 0.15, (refused, attempts)


async def test_the_same_burst_without_pacing_is_refused_by_each_shape(
    emulator: EmulatorHandle,
) -> None:
    # The control: every shape really limits, so the test above could fail.
    for text in SHAPES.values():
        emulator.reset()
        emulator.set_latency(10)
        emulator.set_limit("voiceflow", text)
        headers = {"authorization": KEY, "projectID": "p"}
        async with httpx.AsyncClient(base_url=emulator.url, timeout=10) as raw:
            await asyncio.gather(*(raw.get("/state/user/raw", headers=headers) for _ in range(60)))
        assert emulator.count("rate_limited") >= 5, text


SUITE = """\
name: cleanup
provider: voiceflow
connection: {{base_url: "{url}", api_key_env: SHAPES_TEST_KEY, project_id: p}}
cleanup: {cleanup}
conversations:
  - id: c1
    turns: [{{launch: {{}}}}, {{text: "I need a refund"}}]
  - id: c2
    turns: [{{launch: {{}}}}]
"""


@pytest.mark.parametrize("cleanup", [False, True])
async def test_clean_up_costs_a_request_only_when_the_suite_asks_for_it(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cleanup: bool
) -> None:
    monkeypatch.setenv("SHAPES_TEST_KEY", KEY)
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(url=emulator.url, cleanup=str(cleanup).lower()), "utf-8")
    loaded = load_suite(path)
    store = ResultStore(tmp_path / "results.jsonl")
    async with VoiceflowAdapter(connection_settings(loaded.suite)) as adapter:
        await run_conversations(
            adapter, list(iter_conversations(loaded)), concurrency=2, store=store
        )
    assert {r.status for r in store.latest().values()} == {"passed"}
    assert emulator.count(route="DELETE /state/user/{userID}") == (2 if cleanup else 0)
    assert emulator.count() == 5 + (2 if cleanup else 0)  # 2 starts, 3 turns (+ 2 deletes)
