"""Sharding a suite: shares, the shard parameters, the merge, and whole sharded runs on the
Prefect test server against the emulator, on threads and on a Dask cluster (prefect-dask).

The work-pool path (shards as flow runs of a deployment on two process workers of a
PostgreSQL-backed server) is tested end to end in ``tests/e2e/test_sharded_run.py``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.results import ResultRecordMetadata
from prefect.serializers import JSONSerializer
from prefect.states import Completed
from pydantic import SecretStr

from benchmarks.common import API_KEY, write_suite
from prefect_sessions.batch import shards as shards_module
from prefect_sessions.batch.chunks import WHOLE_SUITE, Share, ShareOutcome, results_file
from prefect_sessions.batch.report import RunSummary
from prefect_sessions.batch.shards import (
    ShardReport,
    ShardsFailedError,
    _merge,
    _report,
    credentials_reference,
    shard_parameters,
)
from prefect_sessions.conversation.dataset import iter_conversations
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.emulator import EmulatorHandle
from prefect_sessions.errors import ConfigurationError
from prefect_sessions.flows import batch_conversations
from prefect_sessions.run_options import RunOptions
from prefect_sessions.voiceflow import VoiceflowCredentials

START = "POST /v4/project/{projectID}/environment/{environmentID}/session"


def test_shares_cover_every_position_once() -> None:
    shares = [Share(index, 3) for index in range(3)]
    for total in (0, 1, 2, 3, 10, 11):
        owners = [[s.index for s in shares if s.holds(p)] for p in range(total)]
        assert all(len(owner) == 1 for owner in owners)
        assert sum(s.size(total) for s in shares) == total
    assert [p for p in range(10) if shares[1].holds(p)] == [1, 4, 7]
    with pytest.raises(ValueError, match="between 0 and 2"):
        Share(3, 3)


def test_each_share_has_its_own_results_file() -> None:
    whole = results_file("runs", "Refund Suite", "Night 1", WHOLE_SUITE)
    part = results_file("runs", "Refund Suite", "Night 1", Share(1, 4))
    assert whole == Path("runs/refund-suite/night-1.jsonl")
    assert part == Path("runs/refund-suite/night-1.shard-2-of-4.jsonl")


def test_shards_get_a_saved_block_by_reference_and_never_an_unsaved_one() -> None:
    block = VoiceflowCredentials(api_key=SecretStr(API_KEY), project_id="p")
    with pytest.raises(ConfigurationError, match=r"credentials: .*not saved.*save it") as caught:
        credentials_reference(block)
    assert API_KEY not in str(caught.value)
    block_id = uuid.uuid4()
    block._block_document_id = block_id
    reference = credentials_reference(block)
    assert reference == {"$ref": {"block_document_id": str(block_id)}}
    options = RunOptions.of(
        suite_path="suite.yaml", run_key="night-1", concurrency=4, rate=None, chunk_size=50
    )
    parameters = shard_parameters(options, Share(2, 3), reference)
    assert parameters == {
        "suite_path": "suite.yaml",
        "shard": 2,
        "shards": 3,
        "run_key": "night-1",
        "concurrency": 4,
        "chunk_size": 50,
        "credentials": reference,
    }
    assert API_KEY not in str(parameters)


def _report_of(shard: int, ids: list[str]) -> ShardReport:
    return ShardReport(
        shard=shard,
        shards=2,
        conversations=len(ids),
        requests=3 * len(ids),
        rate_limited=1,
        results=[ConversationResult(id=i, status="passed") for i in ids],
    )


def test_the_merge_writes_one_file_with_every_conversation_once(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    merged = _merge([_report_of(0, ["a", "c"]), _report_of(1, ["b"])], path, expected=3)
    assert sorted(r.id for r in ResultStore(path)) == ["a", "b", "c"]
    assert (merged.counters.passed, merged.sent.requests, merged.sent.rate_limited) == (3, 9, 2)
    # Merging again (a resumed batch reusing the shards) replaces the file, never doubles it.
    _merge([_report_of(0, ["a", "c"]), _report_of(1, ["b"])], path, expected=3)
    assert len(list(ResultStore(path))) == 3


@pytest.mark.parametrize(
    ("reports", "expected", "message"),
    [
        ([_report_of(0, ["a"]), _report_of(1, ["b"])], 3, "2 of 3 conversations, 0 reported"),
        ([_report_of(0, ["a", "b"]), _report_of(1, ["b"])], 2, r"1 reported twice .*'b'"),
    ],
)
def test_a_merge_that_loses_or_doubles_a_conversation_is_refused(
    tmp_path: Path, reports: list[ShardReport], expected: int, message: str
) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text("earlier\n")
    with pytest.raises(ShardsFailedError, match=message):
        _merge(reports, path, expected=expected)
    assert path.read_text() == "earlier\n"  # the earlier merged file is left as it was


def test_a_shard_report_names_the_conversations_a_resumed_run_tries_again() -> None:
    report = _report_of(0, ["a", "b", "c"])
    report.results[1] = ConversationResult(id="b", status="errored", reason="503")
    report.results[2] = ConversationResult(id="c", status="failed", reason="no refund")
    assert report.errored() == ["b"]


async def test_an_unreadable_shard_result_says_how_to_share_result_storage(
    tmp_path: Path,
) -> None:
    missing = ResultRecordMetadata(
        storage_key=str(tmp_path / "elsewhere" / "result.json"), serializer=JSONSerializer()
    )
    flow_run = FlowRun(flow_id=uuid.uuid4(), name="suite-night-shard-1-of-2")
    flow_run.state = Completed(data=missing)
    with pytest.raises(ConfigurationError, match="PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"):
        await _report(flow_run)


async def _sharded_run(
    emulator: EmulatorHandle, tmp_path: Path, conversations: int, shards: int, **options: Any
) -> tuple[RunSummary, set[str]]:
    emulator.set_limit("voiceflow", None)  # what is tested here is the split, not pacing
    suite = write_suite(tmp_path, conversations, base_url=emulator.url, concurrency=4)
    expected = {c.id for c in iter_conversations(load_suite(suite))}
    state = await batch_conversations.with_options(**options)(
        suite_path=str(suite),
        results_dir=str(tmp_path / "runs"),
        shards=shards,
        shard_deployment=None,
        chunk_size=5,
        return_state=True,
    )
    summary = await state.aresult()
    assert isinstance(summary, RunSummary)
    _last_flow_run_id[:] = [state.state_details.flow_run_id]
    return summary, expected


# The id of the flow run `_sharded_run` last made: tests read their own run by id, never by
# scanning a server that the whole test session shares.
_last_flow_run_id: list[uuid.UUID | None] = []


@pytest.mark.usefixtures("prefect_server")
async def test_a_sharded_run_on_threads_merges_every_conversation_once(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    summary, expected = await _sharded_run(emulator, tmp_path, 30, 3)
    assert (summary.shards, summary.conversations, summary.passed) == (3, 30, 30)
    assert sorted(r.id for r in ResultStore(summary.results_path)) == sorted(expected)
    assert emulator.count(route=START) == 30  # each conversation started exactly once
    # Start, three turns and a state read each: no clean-up request (the suite's default).
    assert summary.requests == emulator.count() == 30 * 5
    # Each shard kept its own results file, which a re-run of that shard would resume.
    shard_files = sorted(p.name for p in Path(summary.results_path).parent.glob("*.shard-*"))
    assert len(shard_files) == 3


@pytest.mark.usefixtures("prefect_server")
async def test_a_sharded_run_on_a_dask_cluster_merges_every_conversation_once(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_dask import DaskTaskRunner

    runner = DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True}
    )
    seen: list[ShardReport] = []  # the reports the flow merges, from wherever the shards ran
    merge = shards_module._merge

    def recording(reports: Iterable[ShardReport], path: Path, expected: int) -> ShareOutcome:
        seen.extend(reports)
        return merge(seen, path, expected)

    monkeypatch.setattr(shards_module, "_merge", recording)
    summary, expected = await _sharded_run(emulator, tmp_path, 20, 2, task_runner=runner)
    assert (summary.shards, summary.conversations, summary.passed) == (2, 20, 20)
    # Each shard ran in a Dask worker process of its own, not in this one.
    processes = {report.ran_on for report in seen}
    assert len(processes) == 2
    assert f"{socket.gethostname()}:{os.getpid()}" not in processes
    assert sorted(r.id for r in ResultStore(summary.results_path)) == sorted(expected)
    assert emulator.count(route=START) == 20


@pytest.mark.usefixtures("prefect_server")
async def test_a_batch_runs_summary_reads_back_from_the_server(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # What the sharded parent does with its shards, and any run_deployment caller with a batch:
    # the state as the server has it carries the persisted summary, not "MissingResult".
    from prefect.client.orchestration import get_client
    from prefect.states import get_state_result

    summary, _ = await _sharded_run(emulator, tmp_path, 4, 1)
    (flow_run_id,) = _last_flow_run_id
    assert flow_run_id is not None
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
    assert flow_run.parameters["results_dir"] == str(tmp_path / "runs")
    assert flow_run.state is not None
    stored = await get_state_result(flow_run.state)
    assert isinstance(stored, RunSummary)
    assert stored == summary
