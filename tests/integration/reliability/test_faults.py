"""The fault matrix: the batch flow on a real Prefect server against the emulator over real HTTP.

Every case runs a small suite with faults injected by the emulator and checks that

- every conversation is accounted for: passed, failed or errored with its reason, or retried
  whole from a fresh session (``attempts == 2``), never silently lost;
- the report's counts match the emulator's own counters (requests, 429s, faults, sessions);
- no interact turn was taken twice on one session, and a turn went to the server again only after
  an answer that proves the server did not act (429, 503).

Conversations run one at a time (``concurrency: 1``) so which conversation meets which queued
fault is fixed: with three faults queued on a route, conversation 0 meets two (its first attempt
and its restart, so it errors with the reason), conversation 1 meets one (restarted, then passes)
and conversations 2 and 3 pass at once, unless the engine absorbs the fault by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL

from prefect_sessions.batch.report import RunSummary
from prefect_sessions.cli import main
from prefect_sessions.conversation.results import ResultStore
from prefect_sessions.emulator import EmulatorConfig
from prefect_sessions.flows import batch_conversations
from prefect_sessions.voiceflow import VoiceflowCredentials
from tests.support.killed_run import kill_after_verdicts
from tests.support.reliability import (
    API_KEY,
    DELETE_STATE,
    INTERACT,
    PROJECT,
    START,
    accounted,
    conversation_ids,
    outcome_counts,
    tapped_emulator,
    write_suite,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

ROWS = 4
TURNS = 3  # interact turns per conversation


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("RELIABILITY_KEY", API_KEY)


def credentials(url: str, **changes) -> VoiceflowCredentials:
    # A 1 s read timeout turns the emulator's `slow` fault into a read timeout quickly.
    options = {"timeout_seconds": 1.0, "max_retry_wait_seconds": 20.0, **changes}
    return VoiceflowCredentials(api_key=API_KEY, project_id=PROJECT, base_url=url, **options)


async def run_flow(suite: Path, results: Path, block: VoiceflowCredentials, key: str) -> RunSummary:
    state = await batch_conversations(
        suite_path=str(suite),
        run_key=key,
        results_dir=str(results),
        credentials=block,
        return_state=True,
    )
    # A run with a failed or errored conversation ends Failed (fail_on="any"), its summary kept.
    summary = await state.aresult(raise_on_failure=False)
    assert isinstance(summary, RunSummary)
    assert state.is_failed() == (not summary.ok)
    return summary


# kind, route, error status, whether the server acted on the faulted request, what follows
MATRIX = [
    ("error", "interact", 503, False, "absorbed"),  # 503 proves it did not act: resent
    ("error", "interact", 500, False, "restart"),  # 500 on a turn: unknown, never resent
    ("error", "interact", 502, False, "restart"),
    ("reset", "interact", 503, False, "restart"),  # reset after the request was sent
    ("slow", "interact", 503, False, "restart"),  # read timeout during interact
    ("cut", "interact", 503, True, "restart"),  # answer cut before its end
    ("malformed", "interact", 503, True, "restart"),  # JSON that does not parse
    ("error", "start", 500, False, "restart"),  # 500 is never retried, even when safe to
    ("error", "start", 502, False, "absorbed"),  # session start is safe to replay
    ("reset", "start", 503, False, "absorbed"),
    ("slow", "start", 503, False, "absorbed"),
    ("cut", "start", 503, True, "absorbed"),
    ("malformed", "start", 503, True, "restart"),  # an unreadable key: start again, whole
]
ROUTE_PREFIX = {"interact": "/v4/interact", "start": "/v4/project/"}
REASON = {
    ("error", 500): "HTTP 500",
    ("error", 502): "HTTP 502",
    ("reset", 503): "no response came back",
    ("slow", 503): "ReadTimeout",
    ("cut", 503): "no response came back",
    ("malformed", 503): "invalid JSON",
}


@pytest.mark.parametrize(
    ("kind", "route", "status", "acts", "follows"),
    MATRIX,
    ids=[f"{k}-{s}-{r}" if k == "error" else f"{k}-{r}" for k, r, s, _, _ in MATRIX],
)
async def test_fault_matrix(tmp_path, kind, route, status, acts, follows):
    config = EmulatorConfig(error_status=status, slow_seconds=10, limits={"voiceflow": None})
    with tapped_emulator(config) as (emulator, tap):
        # With clean-up on: every session the server acted on is also cleaned up, once.
        suite = write_suite(tmp_path, emulator.url, rows=ROWS, cleanup=True)
        emulator.queue_fault(kind, count=3, route=ROUTE_PREFIX[route])
        summary = await run_flow(suite, tmp_path, credentials(emulator.url), f"{kind}-{route}")

        latest = accounted(ResultStore(summary.results_path), conversation_ids(ROWS))
        counts = outcome_counts(latest)
        if follows == "absorbed":
            assert counts == {"passed": 4, "failed": 0, "errored": 0, "restarted": 0}
        else:
            assert counts == {"passed": 3, "failed": 0, "errored": 1, "restarted": 2}
            errored = latest["c-u000"]
            assert errored.attempts == 2
            assert REASON[(kind, status)] in (errored.reason or "")
            operation = "interact" if route == "interact" else "start session"
            assert f"Voiceflow {operation} failed" in (errored.reason or "")
            assert latest["c-u001"].attempts == 2
        assert (summary.passed, summary.errored) == (counts["passed"], counts["errored"])

        # The report against the emulator's own counters.
        assert emulator.count("faults") == 3
        assert summary.requests == emulator.count("requests")
        assert summary.rate_limited == emulator.count("rate_limited") == 0
        attempts = sum(r.attempts for r in latest.values())
        # Attempts whose session start failed never got a session to clean up; a start the
        # server acted on but whose answer was lost left one on the server (replaced by the
        # next start for the same user).
        held = attempts - (3 if route == "start" and follows == "restart" else 0)
        lost = 3 if (route == "start" and acts) else 0
        starts = tap.acted(f"/v4/project/{PROJECT}/environment/main/session")
        assert len(starts) == held + lost
        assert emulator.count("requests", route=DELETE_STATE) == held
        faulted_turns_acted = 3 if (route == "interact" and acts) else 0
        assert len(tap.acted()) == TURNS * counts["passed"] + faulted_turns_acted
        tap.assert_no_turn_acted_twice()
        resent = tap.assert_resent_only_when_not_acted()
        assert resent == (3 if (route == "interact" and follows == "absorbed") else 0)
        print(f"FIGURES fault {kind} {status} {route}: injected 3, {counts}, resent {resent}")


async def test_a_429_storm_with_retry_after_0_loses_nothing(tmp_path):
    """Another client drains the key's window (10 per 1 s, so every 429 says `Retry-After: 0`)
    for three windows while the batch runs: every turn waits and goes through, none twice."""
    with tapped_emulator(EmulatorConfig(limits={"voiceflow": None})) as (emulator, tap):
        emulator.set_limit("voiceflow", "10/1s")
        suite = write_suite(tmp_path, emulator.url, rows=ROWS)
        storming, stop = threading.Event(), threading.Event()
        neighbour_429 = 0

        def neighbour() -> None:
            nonlocal neighbour_429
            windows: set[str] = set()
            with httpx.Client(base_url=emulator.url, timeout=5) as client:
                for _ in range(20_000):  # bounded even if the windows never turn
                    answer = client.get(
                        "/state/user/neighbour",
                        headers={"authorization": API_KEY, "projectID": PROJECT},
                    )
                    if answer.status_code == 429:
                        neighbour_429 += 1
                        windows.add(answer.headers["x-ratelimit-reset"])
                        storming.set()
                    if len(windows) > 3 or stop.is_set():
                        return

        thread = threading.Thread(target=neighbour, daemon=True)
        thread.start()
        try:
            await asyncio.to_thread(storming.wait, 30)
            assert storming.is_set()
            summary = await run_flow(
                suite, tmp_path, credentials(emulator.url, max_attempts=10), "storm"
            )
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, 30)

        latest = accounted(ResultStore(summary.results_path), conversation_ids(ROWS))
        assert outcome_counts(latest) == {"passed": 4, "failed": 0, "errored": 0, "restarted": 0}
        ours = [s for s in tap.outer if s.path != "/state/user/neighbour"]
        limited = [s for s in ours if s.status == 429]
        assert summary.rate_limited == len(limited) > 0
        assert emulator.count("rate_limited") == summary.rate_limited + neighbour_429
        assert summary.requests == len(ours)
        assert any(s.headers.get("retry-after") == "0" for s in limited)
        tap.assert_no_turn_acted_twice()
        resent = tap.assert_resent_only_when_not_acted()
        assert resent == sum(1 for s in limited if s.path == "/v4/interact")
        assert len(tap.acted()) == TURNS * ROWS
        print(f"FIGURES storm: 429s to the batch {len(limited)}, resent turns {resent}, all passed")


async def test_a_session_key_revoked_mid_conversation_errors_with_the_reason(tmp_path):
    """After conversation 1's second turn someone else starts a session for the same user, which
    revokes its key: its third turn is refused (not taken), the conversation errors saying why,
    and the others pass."""
    with tapped_emulator() as (emulator, tap):
        suite = write_suite(tmp_path, emulator.url, rows=ROWS)
        state = emulator.state.voiceflow

        def revoke(seen) -> None:
            if seen.path == "/v4/interact" and seen.status == 200 and len(tap.acted()) == 5:
                session = state.sessions[seen.credential]
                state.start(session.project_id, session.environment, session.user_id, API_KEY)

        tap.hook = revoke
        summary = await run_flow(suite, tmp_path, credentials(emulator.url), "revoked")

        latest = accounted(ResultStore(summary.results_path), conversation_ids(ROWS))
        assert outcome_counts(latest) == {"passed": 3, "failed": 0, "errored": 1, "restarted": 0}
        revoked = latest["c-u001"]
        assert revoked.error_type == "SessionKeyRejectedError"
        assert "superseded by a newer session" in (revoked.reason or "")
        assert [t.turn for t in revoked.turns] == ["launch", "text: 'I need a refund'"]
        refused = [s for s in tap.inner if s.path == "/v4/interact" and s.status == 401]
        assert len(refused) == 1
        assert len(tap.acted()) == TURNS * 3 + 2
        assert summary.requests == emulator.count("requests")
        tap.assert_no_turn_acted_twice()
        assert tap.assert_resent_only_when_not_acted() == 0


class RefuseConnections(httpx.AsyncBaseTransport):
    """Fails the first ``count`` connections for ``path`` before any byte is sent (the way a
    refused or reset-at-connect socket does), then hands requests to the real transport."""

    def __init__(self, path: str, count: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.path = path
        self.left = count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == self.path and self.left > 0:
            self.left -= 1
            raise httpx.ConnectError("connection refused (reliability test)", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_connection_failing_before_the_turn_is_sent_is_retried(tmp_path, monkeypatch):
    """Nothing reached the server, so even an interact turn is sent again, transparently."""
    with tapped_emulator() as (emulator, tap):
        suite = write_suite(tmp_path, emulator.url, rows=ROWS)
        refusals = RefuseConnections("/v4/interact", 3)
        original = VoiceflowCredentials.get_client

        def get_client(self, *, transport=None, **overrides):
            return original(self, transport=refusals, **overrides)

        monkeypatch.setattr(VoiceflowCredentials, "get_client", get_client)
        summary = await run_flow(suite, tmp_path, credentials(emulator.url), "refused")

        latest = accounted(ResultStore(summary.results_path), conversation_ids(ROWS))
        assert outcome_counts(latest) == {"passed": 4, "failed": 0, "errored": 0, "restarted": 0}
        assert refusals.left == 0
        assert summary.requests == emulator.count("requests") + 3  # three never arrived
        assert emulator.count("requests", route=INTERACT) == TURNS * ROWS
        tap.assert_no_turn_acted_twice()
        assert tap.assert_resent_only_when_not_acted() == 0


def test_a_batch_killed_mid_run_resumes_with_every_conversation_accounted_for(tmp_path):
    """SIGKILL mid-batch (faults queued too), then the same run key again: every conversation
    has one verdict; those finished before the kill were not started again; the ones in flight
    were run again whole from fresh sessions; no turn was taken twice on one session."""
    rows = 30
    with tapped_emulator() as (emulator, tap):
        suite = write_suite(tmp_path, emulator.url, rows=rows, concurrency=4)
        emulator.set_latency(20)  # long enough that the kill lands mid-run
        emulator.queue_fault("reset", count=2, route="/v4/interact")
        env = {
            **os.environ,
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "RELIABILITY_KEY": API_KEY,
        }
        command = [
            sys.executable,
            "-m",
            "prefect_sessions.cli",
            "run",
            str(suite),
            "--run-key",
            "killed",
            "--results-dir",
            str(tmp_path),
            "--progress",
            "lines",
        ]
        finished_before = kill_after_verdicts(command, env, 8)
        assert 8 <= len(finished_before) < rows
        starts_before = emulator.count("requests", route=START)
        seen_at_kill = len(tap.inner)

        emulator.set_latency(0)
        assert main(command[3:]) in (0, 1)

        store = ResultStore(tmp_path / "reliability" / "killed.jsonl")
        latest = accounted(store, conversation_ids(rows))
        verdicts: dict[str, int] = {}
        for result in store:
            if result.status != "errored":
                verdicts[result.id] = verdicts.get(result.id, 0) + 1
        assert all(verdicts[c] == 1 for c in finished_before)  # never run twice
        started_after = {
            json.loads(s.body)["userID"]
            for s in tap.inner[seen_at_kill:]
            if s.path.endswith("/session") and s.status == 200
        }
        assert started_after.isdisjoint(finished_before)
        resumed_starts = emulator.count("requests", route=START) - starts_before
        resumed = rows - len(set(finished_before))
        # Each resumed conversation started one fresh session (two if a reset restarted it).
        restarted_after = sum(
            1 for c, r in latest.items() if c not in finished_before and r.attempts == 2
        )
        assert resumed_starts == resumed + restarted_after
        tap.assert_no_turn_acted_twice()
        tap.assert_resent_only_when_not_acted()
        counts = outcome_counts(latest)
        assert counts["passed"] + counts["failed"] + counts["errored"] == rows
        print(
            f"FIGURES kill: {len(finished_before)} done before SIGKILL, {resumed} resumed, {counts}"
        )


async def test_a_stream_cut_before_its_end_is_an_unknown_outcome_never_resent():
    """The SSE answer of a streamed turn loses its final frame: the client says the outcome is
    unknown (the agent took the turn) and does not send the turn again."""
    from prefect_sessions.errors import OutcomeUnknownError

    with tapped_emulator() as (emulator, tap):
        block = credentials(emulator.url)
        emulator.queue_fault("cut", count=1, route="/v4/interact/stream")
        async with block.get_client() as client:
            session = await client.start_session("stream-user")
            traces: list[str] = []

            async def take_turn() -> None:
                async with client.interact_stream(session, "I need a refund") as stream:
                    async for trace in stream:
                        traces.append(trace.type)

            with pytest.raises(OutcomeUnknownError, match=r"stream was cut.*not sent again"):
                await take_turn()
        assert emulator.count("faults", route="POST /v4/interact/stream") == 1
        acted = tap.acted("/v4/interact/stream")
        assert len(acted) == 1  # the server acted once; the client did not resend
        assert len([s for s in tap.outer if s.path == "/v4/interact/stream"]) == 1
